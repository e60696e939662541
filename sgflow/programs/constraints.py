"""From a step's ``gen`` to a concrete :class:`~sgflow.programs.ir.Constraint`.

Resolves named grammars and ``$ref``s to library files (or files beside the program),
turns ``choices`` into a regex, and checks the result with the grammar package, so the
checker and the compiler agree on what a ``gen`` means.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from sgflow.grammars import GrammarError, check, get_grammar, resolve_ref
from sgflow.grammars.spec import Ebnf, JsonSchema, Regex, choices_regex
from sgflow.jsonbounds import loads
from sgflow.programs.ir import Constraint
from sgflow.programs.model import Gen

__all__ = ["check_gen", "choices_regex", "resolve_gen", "resolve_schema_refs"]

_MAX_REF_DEPTH = 16


def resolve_schema_refs(
    schema: Any, *, base_dir: str | None = None, pointer: str = "", depth: int = 0
) -> Any:
    """Inline every ``$ref`` that names a file (library path or relative to ``base_dir``).

    Local refs (``#/...``) stay as they are. Raises :class:`GrammarError` with the pointer
    of a ref that cannot be resolved.
    """
    if isinstance(schema, list):
        return [
            resolve_schema_refs(v, base_dir=base_dir, pointer=f"{pointer}/{i}", depth=depth)
            for i, v in enumerate(schema)
        ]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        if depth >= _MAX_REF_DEPTH:
            raise GrammarError(
                "grammar.ref_cycle",
                f"{pointer}/$ref",
                f"$ref {ref!r} nests more than {_MAX_REF_DEPTH} files deep (a cycle?)",
                "break the cycle between the referenced files",
            )
        target = _load_ref(ref, base_dir, f"{pointer}/$ref")
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        merged = {**copy.deepcopy(target), **siblings}
        return resolve_schema_refs(merged, base_dir=base_dir, pointer=pointer, depth=depth + 1)
    return {
        k: resolve_schema_refs(v, base_dir=base_dir, pointer=f"{pointer}/{k}", depth=depth)
        for k, v in schema.items()
    }


def _load_ref(ref: str, base_dir: str | None, pointer: str) -> dict[str, Any]:
    try:
        return dict(resolve_ref(ref))
    except GrammarError:
        pass
    if base_dir is not None:
        path = (Path(base_dir) / ref).resolve()
        if path.is_file() and Path(base_dir).resolve() in path.parents:
            loaded = loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                return loaded
    raise GrammarError(
        "grammar.ref_unresolved",
        pointer,
        f"$ref {ref!r} names no library schema and no file beside the program",
        "use a name from `sgflow grammars list` (grammars/library/NAME.schema.json) or a "
        "relative path to a JSON file in the program's folder",
    )


def resolve_gen(gen: Gen, *, base_dir: str | None = None) -> Constraint:
    """The concrete constraint of ``gen``; raises :class:`GrammarError` on a bad reference."""
    if gen.choices is not None:
        return Constraint("regex", choices_regex(gen.choices), origin="choices")
    if gen.regex is not None:
        return Constraint("regex", gen.regex)
    if gen.ebnf is not None:
        return Constraint("ebnf", gen.ebnf)
    if gen.json_schema is not None:
        schema = resolve_schema_refs(gen.json_schema, base_dir=base_dir, pointer="/json_schema")
        return Constraint("json_schema", json.dumps(schema), schema=schema)
    if gen.json_schema_from is not None:
        return Constraint("json_schema", dynamic=gen.json_schema_from, origin="dynamic")
    if gen.grammar is not None:
        spec = get_grammar(gen.grammar)
        if isinstance(spec, Regex):
            return Constraint("regex", spec.pattern, origin=f"grammar:{gen.grammar}")
        if isinstance(spec, Ebnf):
            return Constraint("ebnf", spec.grammar, origin=f"grammar:{gen.grammar}")
        assert isinstance(spec, JsonSchema)
        return Constraint(
            "json_schema",
            json.dumps(spec.schema),
            schema=dict(spec.schema),
            origin=f"grammar:{gen.grammar}",
        )
    return Constraint("free")


def spec_of(constraint: Constraint) -> Regex | Ebnf | JsonSchema | None:
    if constraint.kind == "regex":
        assert constraint.source is not None
        return Regex(constraint.source)
    if constraint.kind == "ebnf":
        assert constraint.source is not None
        return Ebnf(constraint.source)
    if constraint.kind == "json_schema" and constraint.schema is not None:
        return JsonSchema(constraint.schema)
    return None


def check_gen(gen: Gen, *, base_dir: str | None = None) -> list[GrammarError]:
    """Every problem with ``gen``'s constraint; pointers are relative to the ``gen`` mapping."""
    try:
        constraint = resolve_gen(gen, base_dir=base_dir)
    except GrammarError as err:
        if err.code == "grammar.unknown_name":
            return [GrammarError(err.code, "/grammar", err.message, err.hint, limit=err.limit)]
        return [err]
    spec = spec_of(constraint)
    if spec is None:
        return []
    prefix = {"regex": "/regex", "ebnf": "/ebnf", "json_schema": "/json_schema"}[constraint.kind]
    if gen.grammar is not None:
        prefix = "/grammar"
    # the grammar package caches its errors: build new ones instead of moving their pointers
    return [
        GrammarError(e.code, prefix + e.pointer, e.message, e.hint, limit=e.limit)
        for e in check(spec)
    ]
