"""What xgrammar 0.2.8 does with each JSON Schema keyword: the data behind the report.

Found by testing, not from documentation (``tests/grammars/test_xgrammar_keywords.py``
holds the evidence and fails when xgrammar changes). :mod:`~sgflow.grammars.enforcement`
applies these defaults and the context rules (beside ``$ref``/``enum``/``pattern``,
without ``type``/``items``) on top.

Behaviour worth knowing, all with ``from_json_schema(any_whitespace=True, strict_mode=True)``
(the engine's settings):

- strict mode: undeclared properties are refused unless ``additionalProperties`` allows
  them; an array or object with count keywords but no ``items``/``properties`` gets *no*
  items or properties (``{"type": "array", "minItems": 1}`` does not even compile).
- keywords ignored silently (no warning): ``uniqueItems``, ``contains``/``minContains``/
  ``maxContains``, ``dependentRequired``, ``dependentSchemas``, ``if``/``then``/``else``,
  ``not``, siblings of ``$ref`` (even ``type``), siblings of ``enum``/``const``, and string or
  number keywords when ``type`` is missing.
- ignored with a warning on stderr: ``multipleOf`` on numbers, ``minLength``/``maxLength``
  beside ``pattern`` or ``format``, ``allOf`` with several branches; ``oneOf`` with
  overlapping branches becomes ``anyOf``.
- narrower than JSON Schema, never looser: ``pattern`` and ``patternProperties`` keys match
  the whole string (``"[0-9]"`` refuses ``"a1"``); length-bounded and patterned strings
  have no escape sequences (no ``\\n``, ``\\"``); numbers with bounds have no exponent and
  at most 6 decimals; properties come in declared order.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "ARRAY_KEYWORDS",
    "FORMATS",
    "KEYWORDS",
    "NUMBER_KEYWORDS",
    "OBJECT_KEYWORDS",
    "STRING_KEYWORDS",
    "Rule",
    "Status",
]

Status = Literal["enforced", "validated", "rejected", "ignored"]
Rule = tuple[Status, str, str]  # status, note, hint

_BOUNDED = "generated without exponent, at most 6 decimals"
_IGNORED_BY_GRAMMAR = "the grammar ignores it; jsonschema validation catches violations"
_NO_ESCAPES = 'no escape sequences (\\n, \\") are generated'

KEYWORDS: dict[str, Rule] = {
    "type": ("enforced", "", ""),
    "enum": ("enforced", "", ""),
    "const": ("enforced", "", ""),
    # objects
    "properties": ("enforced", "in declared order", ""),
    "required": ("enforced", "", ""),
    "additionalProperties": ("enforced", "", ""),
    "patternProperties": ("enforced", "names must match a whole pattern (as if ^…$)", ""),
    "propertyNames": ("enforced", "", ""),
    "minProperties": ("enforced", "", ""),
    "maxProperties": ("enforced", "", ""),
    "unevaluatedProperties": ("enforced", "", ""),
    "dependentRequired": ("validated", _IGNORED_BY_GRAMMAR, ""),
    "dependentSchemas": ("validated", _IGNORED_BY_GRAMMAR, ""),
    "dependencies": ("validated", _IGNORED_BY_GRAMMAR, ""),
    # arrays
    "items": ("enforced", "", ""),
    "prefixItems": ("enforced", "", ""),
    "minItems": ("enforced", "", ""),
    "maxItems": ("enforced", "", ""),
    "unevaluatedItems": ("enforced", "", ""),
    "uniqueItems": ("validated", _IGNORED_BY_GRAMMAR, ""),
    "contains": ("validated", _IGNORED_BY_GRAMMAR, ""),
    "minContains": ("validated", _IGNORED_BY_GRAMMAR, ""),
    "maxContains": ("validated", _IGNORED_BY_GRAMMAR, ""),
    "additionalItems": ("validated", _IGNORED_BY_GRAMMAR, ""),
    # strings
    "minLength": ("enforced", _NO_ESCAPES, ""),
    "maxLength": ("enforced", _NO_ESCAPES, ""),
    "pattern": ("enforced", f"matches the whole string (as if ^…$); {_NO_ESCAPES}", ""),
    "format": ("enforced", "", ""),
    # numbers
    "minimum": ("enforced", _BOUNDED, ""),
    "maximum": ("enforced", _BOUNDED, ""),
    "exclusiveMinimum": ("enforced", _BOUNDED, ""),
    "exclusiveMaximum": ("enforced", _BOUNDED, ""),
    "multipleOf": ("enforced", "", ""),
    # combinators and references
    "anyOf": ("enforced", "", ""),
    "allOf": ("validated", "several branches are not intersected by xgrammar", ""),
    "oneOf": (
        "validated",
        "generated as anyOf; 'exactly one' is checked after generation",
        "",
    ),
    "not": ("validated", _IGNORED_BY_GRAMMAR, ""),
    "if": ("validated", _IGNORED_BY_GRAMMAR, ""),
    "then": ("validated", _IGNORED_BY_GRAMMAR, ""),
    "else": ("validated", _IGNORED_BY_GRAMMAR, ""),
    "$ref": ("enforced", "", ""),
    "$dynamicRef": ("rejected", "xgrammar ignores it (any value)", "use a local $ref"),
    "$recursiveRef": ("rejected", "xgrammar ignores it (any value)", "use a local $ref"),
    # annotations that look like constraints
    "contentEncoding": ("ignored", "an annotation: neither side checks it", ""),
    "contentMediaType": ("ignored", "an annotation: neither side checks it", ""),
    "contentSchema": ("ignored", "an annotation: neither side checks it", ""),
}

STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern", "format"})
NUMBER_KEYWORDS = frozenset(
    {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
)
ARRAY_KEYWORDS = frozenset(
    {
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
        "unevaluatedItems",
        "additionalItems",
    }
)
OBJECT_KEYWORDS = frozenset(
    {
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "unevaluatedProperties",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
    }
)

# Formats xgrammar enforces, with what its grammar still lets through ("" = nothing found).
FORMATS: dict[str, str] = {
    "date": "impossible dates such as 2024-02-30 pass",
    "date-time": "impossible dates such as 2024-02-30 pass",
    "time": "",
    "duration": "",
    "email": "",
    "hostname": "labels over 63 characters pass",
    "ipv4": "leading zeros such as 01.2.3.4 pass",
    "ipv6": "",
    "uri": "",
    "uri-reference": "",
    "uri-template": "",
    "uuid": "",
    "json-pointer": "",
    "relative-json-pointer": "",
}
