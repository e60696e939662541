"""OpenAI's strict subset of JSON Schema: what ``strict: true`` accepts, checked as OpenAI does.

A schema sent with ``strict: true`` (``response_format.json_schema``, ``text.format``, a
function tool) must stay inside the subset OpenAI documents for Structured Outputs, or the
request is refused with OpenAI's 400 (``invalid_json_schema``) naming the keyword and where
it is. Without ``strict`` sgflow accepts every schema its own checker can enforce
(:func:`sgflow.grammars.check`), which is more; the README's table lists the differences.

This lives beside the OpenAI surface, not in :mod:`sgflow.grammars`: the grammar package
answers "can sgflow enforce this schema", while this module encodes another vendor's policy
(its keyword list, its limits, its error wording), which changes with that vendor's docs.

The subset (OpenAI's guide, "Supported schemas"), and the calls made where the docs are silent:

- types ``string``, ``number``, ``integer``, ``boolean``, ``object``, ``array``, ``null``, a
  list of them (``["string", "null"]``), ``enum``, ``const``, ``anyOf``; the root is an object,
  not an ``anyOf``;
- every object has ``properties``, ``required`` listing every property, and
  ``additionalProperties: false``;
- strings: ``pattern``, ``format`` (``date-time``, ``time``, ``date``, ``duration``,
  ``email``, ``hostname``, ``ipv4``, ``ipv6``, ``uuid``), and ``minLength``/``maxLength``
  (not listed either way by the current guide; pydantic emits them for ``Field(min_length=…)``
  and sgflow enforces them, so accepted); numbers: ``multipleOf``, ``minimum``, ``maximum``,
  ``exclusiveMinimum``, ``exclusiveMaximum``; arrays: ``items``, ``minItems``, ``maxItems``;
- ``$defs``/``definitions`` and local ``$ref`` (``#``, ``#/$defs/x``), recursion included; a
  ``$ref`` may carry only annotations beside it;
- annotations the SDK emits are accepted: ``title``, ``description``, ``default`` (OpenAI
  accepts it in strict mode), ``examples``, ``$comment``, ``$schema`` at the root;
- refused: ``allOf``, ``oneOf``, ``not``, ``if``/``then``/``else``, ``dependentRequired``,
  ``dependentSchemas``, ``patternProperties``, ``propertyNames``, ``unevaluated*``,
  ``min``/``maxProperties``, ``contains``, ``uniqueItems``, ``prefixItems``, a ``format``
  outside the list, any unknown keyword, and ``additionalProperties`` other than ``false``
  (so ``Dict[str, int]`` is refused, as OpenAI refuses it);
- limits: 5,000 properties in all, 10 levels of object nesting, 120,000 characters of
  property names, definition names, enum and const values, 1,000 enum values in all, and a
  string enum of more than 250 values at most 15,000 characters.

:func:`normalize_strict` applies OpenAI's reading of one construct that JSON Schema reads
otherwise: ``{"type": ["string", "null"], "enum": ["a", "b"]}`` allows ``null`` (the guide's
moderation example answers ``"category": null``), so ``null`` is added to such an enum before
sgflow constrains and validates with the schema.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from sgflow.errors import SgflowError, escape_pointer

__all__ = [
    "STRICT_FORMATS",
    "STRICT_LIMITS",
    "StrictLimits",
    "StrictProblem",
    "check_strict",
    "normalize_strict",
    "strict_error",
]

STRICT_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment"})
_ALLOWED = frozenset(
    {
        "type",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "definitions",
        # strings
        "pattern",
        "format",
        "minLength",
        "maxLength",
        # numbers
        "multipleOf",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        # arrays
        "items",
        "minItems",
        "maxItems",
        # objects
        "properties",
        "required",
        "additionalProperties",
    }
)


@dataclass(frozen=True)
class StrictLimits:
    """OpenAI's documented limits on a strict schema (defaults in the field values)."""

    max_properties: int = 5000
    max_depth: int = 10
    max_chars: int = 120_000
    max_enum_values: int = 1000
    large_enum: int = 250
    large_enum_chars: int = 15_000


STRICT_LIMITS = StrictLimits()


@dataclass(frozen=True)
class StrictProblem:
    """One way a schema leaves the subset: ``pointer`` (JSON pointer into the schema) of the
    subschema, the ``keyword`` at fault and OpenAI's ``reason`` wording."""

    pointer: str
    keyword: str
    reason: str
    limit: int | None = None

    @property
    def context(self) -> str:
        """OpenAI's ``context=(…)`` tuple for the pointer: ``('properties', 'a')``."""
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in self.pointer.split("/")[1:]]
        return repr(tuple(int(t) if t.isdigit() else t for t in tokens))


class _Walk:
    def __init__(self, root: dict[str, Any], limits: StrictLimits) -> None:
        self.root = root
        self.limits = limits
        self.problems: list[StrictProblem] = []
        self.properties = 0
        self.chars = 0
        self.enum_values = 0

    def add(self, pointer: str, keyword: str, reason: str, limit: int | None = None) -> None:
        self.problems.append(StrictProblem(pointer, keyword, reason, limit))

    def node(self, schema: Any, pointer: str, depth: int, *, root: bool = False) -> None:
        if not isinstance(schema, dict):
            self.add(pointer, "type", "a schema must be an object with a 'type'")
            return
        for key in schema:
            if key in _ALLOWED or key in _ANNOTATIONS or (root and key == "$schema"):
                continue
            self.add(pointer, key, f"'{key}' is not permitted")
        if not any(k in schema for k in ("type", "anyOf", "$ref", "enum", "const")):
            self.add(pointer, "type", "schema must have a 'type' key")
        types = self.types(schema, pointer)
        if "$ref" in schema:
            self.ref(schema, pointer)
        if "anyOf" in schema:
            self.any_of(schema["anyOf"], pointer, depth, root=root)
        if "enum" in schema:
            self.enum(schema["enum"], pointer)
        if "const" in schema:
            self.chars += len(str(schema["const"]))
        if "format" in schema and schema["format"] not in STRICT_FORMATS:
            self.add(
                pointer,
                "format",
                f"format {schema['format']!r} is not permitted; use one of "
                + ", ".join(sorted(STRICT_FORMATS)),
            )
        if "object" in types or "properties" in schema:
            self.object(schema, pointer, depth + 1)
        if "items" in schema:
            self.node(schema["items"], f"{pointer}/items", depth)
        for defs in ("$defs", "definitions"):
            if isinstance(schema.get(defs), dict):
                for name, sub in schema[defs].items():
                    self.chars += len(name)
                    self.node(sub, f"{pointer}/{defs}/{escape_pointer(name)}", 0)

    def types(self, schema: dict[str, Any], pointer: str) -> set[str]:
        declared = schema.get("type")
        if declared is None:
            return set()
        names = declared if isinstance(declared, list) else [declared]
        if not names or not all(isinstance(t, str) and t in _TYPES for t in names):
            self.add(pointer, "type", f"type {declared!r} is not one of {sorted(_TYPES)}")
            return set()
        return set(names)

    def ref(self, schema: dict[str, Any], pointer: str) -> None:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            self.add(pointer, "$ref", f"$ref {ref!r} is not permitted: only local refs (#/$defs/…)")
            return
        siblings = sorted(k for k in schema if k != "$ref" and k not in _ANNOTATIONS)
        if siblings:
            self.add(pointer, "$ref", f"$ref cannot have keywords {siblings}")

    def any_of(self, branches: Any, pointer: str, depth: int, *, root: bool) -> None:
        if root:
            self.add(pointer, "anyOf", "the root schema must be an object, not 'anyOf'")
        if not isinstance(branches, list) or not branches:
            self.add(pointer, "anyOf", "'anyOf' must be a non-empty list of schemas")
            return
        for i, branch in enumerate(branches):
            self.node(branch, f"{pointer}/anyOf/{i}", depth)

    def enum(self, values: Any, pointer: str) -> None:
        if not isinstance(values, list) or not values:
            self.add(pointer, "enum", "'enum' must be a non-empty list")
            return
        self.enum_values += len(values)
        text = sum(len(str(v)) for v in values)
        self.chars += text
        if (
            len(values) > self.limits.large_enum
            and all(isinstance(v, str) for v in values)
            and text > self.limits.large_enum_chars
        ):
            self.add(
                pointer,
                "enum",
                f"an enum of {len(values)} strings may total {self.limits.large_enum_chars} "
                f"characters; this one has {text}",
                self.limits.large_enum_chars,
            )

    def object(self, schema: dict[str, Any], pointer: str, depth: int) -> None:
        if depth > self.limits.max_depth:
            self.add(
                pointer,
                "properties",
                f"objects nest {depth} levels deep; the limit is {self.limits.max_depth}",
                self.limits.max_depth,
            )
        if schema.get("additionalProperties") is not False:
            self.add(
                pointer,
                "additionalProperties",
                "'additionalProperties' is required to be supplied and to be false",
            )
        props = schema.get("properties")
        if not isinstance(props, dict):
            self.add(pointer, "properties", "object schema missing properties")
            return
        required = schema.get("required")
        missing = [k for k in props if not isinstance(required, list) or k not in required]
        if missing:
            self.add(
                pointer,
                "required",
                "'required' is required to be supplied and to be an array including every key "
                f"in properties. Missing '{missing[0]}'",
            )
        for name, sub in props.items():
            self.properties += 1
            self.chars += len(name)
            self.node(sub, f"{pointer}/properties/{escape_pointer(name)}", depth)

    def totals(self) -> None:
        checks = (
            (self.properties, self.limits.max_properties, "properties", "object properties"),
            (self.enum_values, self.limits.max_enum_values, "enum", "enum values"),
            (self.chars, self.limits.max_chars, "properties", "characters of names and values"),
        )
        for count, limit, keyword, what in checks:
            if count > limit:
                self.add("", keyword, f"the schema has {count} {what}; the limit is {limit}", limit)


def check_strict(
    schema: Any, *, limits: StrictLimits = STRICT_LIMITS, root_object: bool = True
) -> list[StrictProblem]:
    """Every way ``schema`` leaves OpenAI's strict subset, in document order (empty: inside).

    ``root_object`` (default True): the root must be ``type: "object"`` (a response format
    and a function's parameters both must). Never raises.
    """
    if not isinstance(schema, dict):
        return [StrictProblem("", "type", "schema must be a JSON Schema of 'type: \"object\"'")]
    walk = _Walk(schema, limits)
    if root_object and schema.get("type") != "object" and "anyOf" not in schema:
        got = schema.get("type")
        walk.add(
            "",
            "type",
            f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{got}\"'",
        )
    walk.node(schema, "", 0, root=True)
    walk.totals()
    return walk.problems


def strict_error(
    problems: list[StrictProblem],
    *,
    what: str,
    field: str,
    param: str,
    openai_code: str = "invalid_json_schema",
) -> SgflowError:
    """The 400 for a strict schema outside the subset, worded as OpenAI words it:
    ``Invalid schema for {what}: In context=(…), {reason}.`` ``what`` is e.g.
    ``response_format 'Person'`` or ``function 'search'``; ``field`` the JSON pointer of the
    schema in the request body; ``param`` OpenAI's name for it (``response_format``,
    ``text.format.schema``, ``tools[0].function.parameters``). Every problem is listed in
    ``errors``."""
    first = problems[0]
    return SgflowError(
        "openai.invalid_json_schema",
        f"Invalid schema for {what}: In context={first.context}, {first.reason}.",
        field=field + first.pointer,
        limit=first.limit,
        hint="keep to OpenAI's strict subset, or send `strict: false` to use every keyword "
        "sgflow can enforce",
        extra={
            "param": param,
            "openai_code": openai_code,
            "keyword": first.keyword,
            "errors": [
                {"field": field + p.pointer, "keyword": p.keyword, "message": p.reason}
                for p in problems
            ],
        },
    )


def normalize_strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a strict ``schema`` read as OpenAI reads it: an ``enum`` beside a ``type``
    that allows ``null`` gets ``null`` among its values."""
    out = copy.deepcopy(schema)
    stack: list[Any] = [out]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        types = node.get("type")
        enum = node.get("enum")
        nullable = isinstance(types, list) and "null" in types
        if nullable and isinstance(enum, list) and None not in enum:
            node["enum"] = [*enum, None]
        stack.extend(v for k, v in node.items() if k not in ("enum", "const", "default"))
    return out
