"""The enforcement report: for each keyword of a JSON Schema, who guarantees it.

:func:`explain` walks a schema and gives every constraint keyword a status:

- ``enforced``  the grammar enforces it while decoding: no output can violate it;
- ``validated`` the grammar ignores it, or enforces only part of it; sgflow's ``jsonschema``
  validation after generation catches violations (and the step is retried per policy);
- ``rejected``  xgrammar refuses it, or would compile it to a grammar no valid output fits;
  :func:`~sgflow.grammars.check` refuses the schema with ``grammar.unsupported``;
- ``ignored``   neither side checks it (``contentEncoding``, a ``format`` that neither
  xgrammar nor the installed ``jsonschema`` knows, unknown keywords). A fourth status,
  because calling these ``validated`` would be a promise nobody keeps.

The table is not from documentation: ``tests/grammars/test_xgrammar_keywords.py`` builds,
for every row, an instance that violates only that keyword and asks xgrammar 0.2.8
whether it accepts it, and fails when this module disagrees — so an xgrammar upgrade that
changes behaviour fails the tests instead of silently changing the guarantees.
Annotations (``title``, ``description``, ``default``, ``$defs`` …) are not reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jsonschema

from sgflow.grammars import safe_regex, validation
from sgflow.grammars.enforcement_rules import (
    ARRAY_KEYWORDS,
    FORMATS,
    KEYWORDS,
    NUMBER_KEYWORDS,
    OBJECT_KEYWORDS,
    STRING_KEYWORDS,
    Rule,
    Status,
)
from sgflow.grammars.errors import escape_pointer
from sgflow.grammars.schema_refs import is_local_ref
from sgflow.grammars.schema_walk import ANNOTATIONS, children, implied_types

__all__ = ["KeywordReport", "Status", "explain", "format_report"]

_INT64 = 2**63 - 1
_FALSE_REFUSED = {"properties", "patternProperties", "prefixItems", "anyOf", "oneOf", "allOf"}
_NOT_GENERATED = {"not", "if", "then", "else", "dependentSchemas", "dependencies", "contains"}
_Ceiling = tuple[Status, str]  # the best status below a keyword the grammar skips, and why


@dataclasses.dataclass(frozen=True)
class KeywordReport:
    """``keyword`` of the subschema at ``pointer``; ``at`` points at the offending value."""

    pointer: str
    keyword: str
    status: Status
    note: str = ""
    hint: str = ""
    at: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"pointer": self.pointer, "keyword": self.keyword, "status": self.status}
        out["note"] = self.note
        out["at"] = self.at
        if self.hint:
            out["hint"] = self.hint
        return out


def explain(schema: dict[str, Any]) -> list[KeywordReport]:
    """One row per constraint keyword occurrence of ``schema``, in document order.

    Never raises on a malformed schema: what cannot be understood is reported as it is
    found (run :func:`~sgflow.grammars.check` for validity).
    """
    checked_formats = _checked_formats(schema)
    rows: list[KeywordReport] = []
    stack: list[tuple[Any, str, _Ceiling | None]] = [(schema, "", None)]
    while stack:
        node, pointer, ceiling = stack.pop()
        if not isinstance(node, dict):
            continue
        limited: dict[str, _Ceiling] = {}
        listed = _listed_values_conform(node)
        for keyword, value in node.items():
            if keyword in ANNOTATIONS:
                continue
            status, note, hint = _classify(node, keyword, value, checked_formats, listed)
            if ceiling is not None and _rank(status) < _rank(ceiling[0]):
                status, note = ceiling
            rows.append(_row(pointer, keyword, status, note, hint))
            # the grammar does not apply these subschemas (oneOf's branches it does apply)
            if keyword in _NOT_GENERATED or (status != "enforced" and keyword != "oneOf"):
                limit: Status = "ignored" if status == "ignored" else "validated"
                limited[keyword] = (limit, f"inside {keyword}, which the grammar does not apply")
        subs = []
        for keyword, sub_pointer, sub in children(node, pointer):
            if sub is False and keyword in _FALSE_REFUSED:
                note = f"{sub_pointer} is the schema `false`, which xgrammar cannot compile"
                hint = "remove it; forbid the property with additionalProperties: false"
                rows.append(KeywordReport(pointer, keyword, "rejected", note, hint, sub_pointer))
            sub_ceiling = limited.get(keyword, ceiling)
            if ceiling is not None and sub_ceiling is not None:
                sub_ceiling = max(ceiling, sub_ceiling, key=lambda c: _rank(c[0]))
            subs.append((sub, sub_pointer, sub_ceiling))
        stack.extend(reversed(subs))
    return rows


def _checked_formats(schema: Any) -> set[str]:
    """The formats sgflow's post-generation validation checks for this schema's draft."""
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    except Exception:  # a malformed $schema: validation will use the default draft
        cls = jsonschema.Draft202012Validator
    return set(cls.FORMAT_CHECKER.checkers)


def format_report(reports: list[KeywordReport]) -> str:
    """A plain-text table: pointer, keyword, status, note."""
    if not reports:
        return "(no constraint keywords)"
    header = ("pointer", "keyword", "status", "note")
    lines = [(r.pointer or "/", r.keyword, r.status, r.note) for r in reports]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(3)]
    out = []
    for row in [header, *lines]:
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        out.append("  ".join([*cells, row[3]]).rstrip())
    return "\n".join(out)


def _rank(status: Status) -> int:
    return {"enforced": 0, "validated": 1, "ignored": 2, "rejected": 3}[status]


def _row(pointer: str, keyword: str, status: Status, note: str, hint: str) -> KeywordReport:
    at = f"{pointer}/{escape_pointer(keyword)}"
    return KeywordReport(pointer, keyword, status, note, hint, at)


def _classify(
    node: dict[str, Any], keyword: str, value: Any, checked: set[str], listed: bool | None
) -> Rule:
    """The status, note and hint of one keyword of one subschema."""
    if keyword == "$ref":
        if isinstance(value, str) and not is_local_ref(value):
            hint = "refer to #/$defs/name; library schemas are inlined by programs"
            return "rejected", "not a local ref: xgrammar would allow any value here", hint
        return "enforced", "", ""
    if "$ref" in node:
        return "validated", "ignored beside $ref (xgrammar uses only the referenced schema)", ""
    if keyword not in ("enum", "const") and ("enum" in node or "const" in node):
        if listed:
            return "enforced", "implied: every value of enum/const satisfies it", ""
        return "validated", "ignored beside enum/const (the grammar lists the values)", ""
    rule = KEYWORDS.get(keyword)
    if rule is None:
        return "ignored", "unknown keyword: neither xgrammar nor jsonschema checks it", ""
    types = implied_types(node)
    for group, kind in (
        (STRING_KEYWORDS, {"string"}),
        (NUMBER_KEYWORDS, {"integer", "number"}),
        (ARRAY_KEYWORDS, {"array"}),
        (OBJECT_KEYWORDS, {"object"}),
    ):
        if keyword in group:
            if types is None:
                t = sorted(kind)[-1]
                return "validated", f"without `type`, xgrammar ignores it (add type: {t})", ""
            if not types & kind:
                return "ignored", f"does not apply to type {'/'.join(sorted(types))}", ""
    special = _SPECIAL.get(keyword)
    if special is not None:
        return special(node, value, types or set(), checked)
    return rule


def _listed_values_conform(node: dict[str, Any]) -> bool | None:
    """Whether every enum/const value satisfies the rest of ``node`` (None: no enum/const)."""
    if isinstance(node.get("enum"), list):
        values = node["enum"]
    elif "const" in node:
        values = [node["const"]]
    else:
        return None
    rest = {k: v for k, v in node.items() if k not in ("enum", "const")}
    try:  # enum values and patterns are the user's: validate with RE2, never Python's re
        return all(validation.is_valid(v, rest) for v in values)
    except Exception:  # a malformed keyword: cannot tell, so do not promise
        return False


_Special = Callable[[dict[str, Any], Any, set[str], set[str]], Rule]


def _string_length(node: dict[str, Any], value: Any, types: set[str], checked: set[str]) -> Rule:
    if "pattern" in node or _known_format(node.get("format")):
        beside = "pattern" if "pattern" in node else "format"
        return "validated", f"ignored beside {beside}", ""
    return KEYWORDS["minLength"]


def _pattern(node: dict[str, Any], value: Any, types: set[str], checked: set[str]) -> Rule:
    if _known_format(node.get("format")):
        return "validated", "ignored beside format", ""
    return KEYWORDS["pattern"]


def _known_format(value: Any) -> bool:
    return isinstance(value, str) and value in FORMATS


def _format(node: dict[str, Any], value: Any, types: set[str], checked: set[str]) -> Rule:
    if not isinstance(value, str):
        return "ignored", "not a string: neither side checks it", ""
    if value in FORMATS:
        gap = FORMATS[value]
        if not gap:
            return "enforced", "", ""
        # partial: the grammar gets the shape right; whether anything catches the rest
        # depends on jsonschema's optional format packages, so say which is the case here
        who = "jsonschema checks it" if value in checked else "the installed jsonschema does not"
        return "validated", f"the grammar enforces the shape, but {gap}; {who}", ""
    if value in checked:
        return "validated", f"xgrammar does not know format {value!r}; jsonschema checks it", ""
    return "ignored", f"neither xgrammar nor the installed jsonschema checks {value!r}", ""


def _bound(node: dict[str, Any], value: Any, types: set[str], checked: set[str]) -> Rule:
    if isinstance(value, bool):
        hint = "use the numeric form, e.g. exclusiveMinimum: 5"
        return "rejected", "a boolean bound (draft 4) is not supported", hint
    if types & {"integer", "number"} == {"integer"} and isinstance(value, int | float):
        if value != int(value):
            hint = "round the bound to a whole number"
            return "rejected", "xgrammar refuses a fractional bound on an integer", hint
        if abs(value) > _INT64:
            hint = "use type: number, or a bound within ±9223372036854775807"
            return "rejected", "xgrammar refuses integer bounds beyond 64 bits", hint
        return "enforced", "", ""
    return KEYWORDS["minimum"]


def _multiple_of(node: dict[str, Any], value: Any, types: set[str], checked: set[str]) -> Rule:
    if "number" in types:
        return "validated", "xgrammar ignores multipleOf on numbers (integers only)", ""
    return KEYWORDS["multipleOf"]


def _item_count(node: dict[str, Any], value: Any, types: set[str], checked: set[str]) -> Rule:
    prefix = node.get("prefixItems")
    if "items" not in node:
        hint = "add `items` (items: {} for any value)"
        if not isinstance(prefix, list):
            return "rejected", "without `items`, xgrammar allows no items at all here", hint
        if isinstance(value, int) and value > len(prefix) and "minItems" in node:
            return "rejected", "more than the prefixItems, and no `items` for the rest", hint
    return KEYWORDS["minItems"]


def _required(node: dict[str, Any], value: Any, types: set[str], checked: set[str]) -> Rule:
    properties = node.get("properties")
    declared: dict[str, Any] = properties if isinstance(properties, dict) else {}
    patterns = node.get("patternProperties")
    extra = node.get("additionalProperties", node.get("unevaluatedProperties"))
    names = [n for n in value if isinstance(n, str)] if isinstance(value, list) else []
    missing = [n for n in names if n not in declared and not _matches_any(patterns, n)]
    if not missing:
        return KEYWORDS["required"]
    listed = ", ".join(repr(n) for n in missing)
    if extra is None or extra is False:
        note = f"{listed} not in properties, and xgrammar forbids undeclared ones here"
        return "rejected", note, f"declare {listed} under properties"
    return "validated", f"{listed} not in properties: generated only if the model chooses", ""


def _matches_any(patterns: Any, name: str) -> bool:
    if not isinstance(patterns, dict):
        return False
    for pattern in patterns:
        try:  # xgrammar generates whole keys, so the question is a full match
            if safe_regex.fullmatch(pattern, name):
                return True
        except safe_regex.RegexRefused:
            continue
    return False


def _all_of(node: dict[str, Any], value: Any, types: set[str], checked: set[str]) -> Rule:
    siblings = [k for k in node if k != "allOf" and k not in ANNOTATIONS]
    if isinstance(value, list) and len(value) == 1 and not siblings:
        return "enforced", "a single branch is merged into the schema", ""
    return KEYWORDS["allOf"]


def _items(node: dict[str, Any], value: Any, types: set[str], checked: set[str]) -> Rule:
    if isinstance(value, list):
        hint = "use prefixItems for per-position schemas"
        return "rejected", "the array form of items (draft 7) is not supported", hint
    return KEYWORDS["items"]


def _enum(node: dict[str, Any], value: Any, types: set[str], checked: set[str]) -> Rule:
    if isinstance(value, list) and not value:
        return "rejected", "xgrammar refuses an empty enum", "list at least one value"
    return KEYWORDS["enum"]


_SPECIAL: dict[str, _Special] = {
    "minLength": _string_length,
    "maxLength": _string_length,
    "pattern": _pattern,
    "format": _format,
    "minimum": _bound,
    "maximum": _bound,
    "exclusiveMinimum": _bound,
    "exclusiveMaximum": _bound,
    "multipleOf": _multiple_of,
    "minItems": _item_count,
    "maxItems": _item_count,
    "required": _required,
    "allOf": _all_of,
    "items": _items,
    "enum": _enum,
}
