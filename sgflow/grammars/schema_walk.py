"""Walking a JSON Schema: every subschema with its JSON pointer, depth and how it was reached.

Shared by the static checks (depth, enum size, patterns, ``$ref``s) and by the
enforcement report, so both see the same subschemas at the same pointers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from sgflow.grammars.errors import escape_pointer

__all__ = [
    "ANNOTATIONS",
    "APPLICATORS",
    "PRODUCTIVE",
    "Node",
    "children",
    "implied_types",
    "iter_nodes",
    "json_depth",
]

# keywords whose value is one subschema / a list of them / a map of name -> subschema
_SINGLE = frozenset(
    {
        "items",
        "additionalProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "propertyNames",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "additionalItems",
        "contentSchema",
    }
)
_LIST = frozenset({"prefixItems", "allOf", "anyOf", "oneOf"})
_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
APPLICATORS = _SINGLE | _LIST | _MAP | {"dependencies"}

# applicators whose subschema describes a part *inside* the value (a property, an item):
# a $ref loop through one of them is recursion that produces JSON (a tree), not a loop
PRODUCTIVE = frozenset(
    {
        "items",
        "prefixItems",
        "additionalProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "properties",
        "patternProperties",
        "contains",
        "additionalItems",
        "propertyNames",
        "dependencies",
        "dependentSchemas",
    }
)

# keywords that constrain nothing: skipped by the enforcement report
ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$anchor",
        "$dynamicAnchor",
        "$vocabulary",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)


@dataclasses.dataclass(frozen=True)
class Node:
    """One subschema: ``via`` is the keyword that led to it (``""`` for the start)."""

    pointer: str
    schema: Any  # a dict, or a boolean schema
    depth: int
    via: str
    productive: bool  # reached through a PRODUCTIVE keyword somewhere on the path


def children(schema: Any, pointer: str) -> Iterator[tuple[str, str, Any]]:
    """``(keyword, pointer, subschema)`` for each direct subschema, in document order."""
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        base = f"{pointer}/{escape_pointer(key)}"
        if key in _SINGLE or (key == "items" and not isinstance(value, list)):
            if isinstance(value, dict | bool):
                yield key, base, value
        elif key in _LIST or key == "items":
            if isinstance(value, list):
                for i, sub in enumerate(value):
                    if isinstance(sub, dict | bool):
                        yield key, f"{base}/{i}", sub
        elif (key in _MAP or key == "dependencies") and isinstance(value, dict):
            for name, sub in value.items():
                # draft-7 "dependencies" mixes schemas and lists of names
                if isinstance(sub, dict | bool):
                    yield key, f"{base}/{escape_pointer(name)}", sub


def iter_nodes(
    schema: Any,
    pointer: str = "",
    *,
    skip: frozenset[str] = frozenset(),
    depth: int = 0,
    via: str = "",
    productive: bool = False,
) -> Iterator[Node]:
    """Every subschema of ``schema`` (itself first), depth-first in document order.

    Keywords in ``skip`` are not descended into (e.g. ``$defs`` when following refs).
    Iterative, so a hostile depth cannot exhaust Python's recursion limit.
    """
    stack = [Node(pointer, schema, depth, via, productive)]
    while stack:
        node = stack.pop()
        yield node
        subs = [
            Node(p, sub, node.depth + 1, key, node.productive or key in PRODUCTIVE)
            for key, p, sub in children(node.schema, node.pointer)
            if key not in skip
        ]
        stack.extend(reversed(subs))


def json_depth(value: Any) -> int:
    """Nesting of lists/objects in a plain JSON value (``1`` → 0, ``[1]`` → 1)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


_OBJECT_HINTS = ("properties", "additionalProperties", "patternProperties", "propertyNames")
_ARRAY_HINTS = ("items", "prefixItems")


def implied_types(schema: dict[str, Any]) -> set[str] | None:
    """The JSON types xgrammar generates for ``schema``; ``None`` means any value.

    An explicit ``type`` wins; otherwise ``properties``-like keywords imply an object and
    ``items``/``prefixItems`` an array (tested: xgrammar then enforces ``required`` or
    ``minItems`` without a ``type``). Other keywords imply nothing: ``{"minimum": 3}``
    alone generates any value and enforces nothing.
    """
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    implied = set()
    if any(k in schema for k in _OBJECT_HINTS):
        implied.add("object")
    if any(k in schema for k in _ARRAY_HINTS):
        implied.add("array")
    return implied or None
