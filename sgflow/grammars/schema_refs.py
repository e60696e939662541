"""``$ref`` checks: only local refs, each one resolving, and no loops.

xgrammar 0.2.8 resolves only ``#`` and ``#/…`` refs. Anything else — ``other.json``,
``https://…``, an anchor ``#name`` — it does not refuse: it logs a warning and compiles
the ref to *any JSON value*, so a typo would silently lift every constraint below it.
``$dynamicRef``/``$recursiveRef`` it ignores the same way. A ref that loops without
passing through a property or an item (``{"$ref": "#"}``, ``a → b → a``) compiles to a
grammar that accepts nothing. All of these are refused here, with the ref's pointer.
Recursion through properties or items (a tree) works in xgrammar and is allowed by default
(``SGFLOW_ALLOW_RECURSIVE_REFS=0`` refuses it): a model that nests until ``max_tokens`` ends
in ``output.truncated``, never in an invalid success.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import unquote

from sgflow.grammars.errors import GrammarError
from sgflow.grammars.schema_walk import iter_nodes

__all__ = ["check_refs", "is_local_ref", "resolve_local"]

_NOT_FOUND = object()
_DEFS = frozenset({"$defs", "definitions"})


def is_local_ref(ref: str) -> bool:
    """``#`` or ``#/json/pointer``: the only refs xgrammar resolves."""
    return ref == "#" or ref.startswith("#/")


def resolve_local(root: Any, ref: str) -> Any:
    """The subschema ``ref`` (``#/…``) points to in ``root``; ``_NOT_FOUND`` if none."""
    current = root
    if ref == "#":
        return current
    for raw in ref[2:].split("/"):
        token = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            return _NOT_FOUND
    return current


@dataclasses.dataclass(frozen=True)
class _Edge:
    target: str  # the pointer the ref resolves to ("" for the root)
    at: str  # pointer of the "$ref" keyword
    productive: bool


def check_refs(root: Any, *, allow_recursive: bool) -> list[GrammarError]:
    """Every unsupported, dangling or looping ref of ``root``, in document order."""
    errors: list[GrammarError] = []
    for node in iter_nodes(root):
        if not isinstance(node.schema, dict):
            continue
        for key in ("$dynamicRef", "$recursiveRef"):
            if key in node.schema:
                errors.append(
                    GrammarError(
                        "grammar.unsupported",
                        f"{node.pointer}/{key}",
                        f"{key} is not supported: xgrammar ignores it and would allow any value",
                        "use a plain local $ref such as #/$defs/name",
                    )
                )
        ref = node.schema.get("$ref")
        if not isinstance(ref, str):
            continue
        at = f"{node.pointer}/$ref"
        if not is_local_ref(ref):
            errors.append(
                GrammarError(
                    "grammar.unsupported",
                    at,
                    f"$ref {ref!r} is not a local ref; xgrammar would compile it to any JSON value",
                    "put the subschema under $defs and refer to it as #/$defs/name (library "
                    "schemas are inlined when a program names grammars/library/NAME.schema.json)",
                )
            )
        elif resolve_local(root, ref) is _NOT_FOUND:
            errors.append(
                GrammarError(
                    "grammar.invalid_schema",
                    at,
                    f"$ref {ref!r} does not resolve in this schema",
                    "point it at an existing subschema, e.g. #/$defs/name",
                )
            )
    if errors:
        return errors
    return _cycles(root, allow_recursive=allow_recursive)


def _edges(root: Any, start: str) -> list[_Edge]:
    """The refs used by the subschema at ``start`` (not those inside its ``$defs``)."""
    schema = resolve_local(root, "#" + start) if start else root
    out = []
    for node in iter_nodes(schema, start, skip=_DEFS):
        ref = node.schema.get("$ref") if isinstance(node.schema, dict) else None
        if isinstance(ref, str):
            target = "" if ref == "#" else unquote(ref[1:])
            out.append(_Edge(target, f"{node.pointer}/$ref", node.productive))
    return out


def _cycles(root: Any, *, allow_recursive: bool) -> list[GrammarError]:
    errors: list[GrammarError] = []
    reported: set[str] = set()
    edges: dict[str, list[_Edge]] = {}
    on_path: list[str] = []
    path_edges: list[_Edge] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        on_path.append(node)
        for edge in edges.setdefault(node, _edges(root, node)):
            if edge.target in on_path:
                loop = path_edges[on_path.index(edge.target) :] + [edge]
                _report(loop, errors, reported, allow_recursive=allow_recursive)
            elif edge.target not in done:
                path_edges.append(edge)
                visit(edge.target)
                path_edges.pop()
        on_path.pop()
        done.add(node)

    visit("")
    return errors


def _report(
    loop: list[_Edge], errors: list[GrammarError], reported: set[str], *, allow_recursive: bool
) -> None:
    closing = loop[-1]
    if closing.at in reported:
        return
    chain = " -> ".join(["#" + closing.target] + [e.at for e in loop])
    if not any(e.productive for e in loop):
        reported.add(closing.at)
        errors.append(
            GrammarError(
                "grammar.ref_cycle",
                closing.at,
                f"$ref loop that never produces a value ({chain}); it accepts nothing",
                "make the loop pass through a property or an item, or remove it",
            )
        )
    elif not allow_recursive:
        reported.add(closing.at)
        errors.append(
            GrammarError(
                "grammar.ref_cycle",
                closing.at,
                f"recursive $ref ({chain}): a small model can nest until max_tokens",
                "unroll the recursion to a fixed depth, or set SGFLOW_ALLOW_RECURSIVE_REFS=1",
            )
        )
