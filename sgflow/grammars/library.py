"""The named grammar library: ``sgflow/grammars/library/`` read as package data.

Each grammar is one file — ``NAME.regex`` (one regex, no comment syntax exists),
``NAME.ebnf`` (``#`` comments, which xgrammar accepts) or ``NAME.schema.json`` — and one
entry of ``library/index.json``: ``{file, kind, description, examples_valid,
examples_invalid}``. The examples are executable documentation: the test suite checks that
every grammar accepts its valid examples and refuses its invalid ones, with xgrammar and
with an independent checker (``re.fullmatch`` or ``jsonschema``).

A schema may refer to another library schema with ``{"$ref":
"grammars/library/NAME.schema.json"}``; :func:`get_grammar` and :func:`resolve_ref` inline
such refs, because xgrammar resolves only local ones.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from importlib import resources
from typing import Any

from sgflow.grammars.errors import GrammarError
from sgflow.grammars.spec import Ebnf, JsonSchema, Regex

__all__ = [
    "LIBRARY_PREFIX",
    "GrammarInfo",
    "get_grammar",
    "grammar_source",
    "list_grammars",
    "resolve_ref",
]

LIBRARY_PREFIX = "grammars/library/"
_MAX_INLINE_DEPTH = 8  # library files referring to library files, this deep at most


@dataclasses.dataclass(frozen=True)
class GrammarInfo:
    """One entry of the library index."""

    name: str
    file: str
    kind: str  # "regex" | "ebnf" | "json_schema"
    description: str
    examples_valid: tuple[str, ...]
    examples_invalid: tuple[str, ...]


def _folder() -> resources.abc.Traversable:
    return resources.files("sgflow.grammars").joinpath("library")


@functools.cache
def _index() -> dict[str, GrammarInfo]:
    raw = json.loads(_folder().joinpath("index.json").read_text(encoding="utf-8"))
    return {
        name: GrammarInfo(
            name=name,
            file=entry["file"],
            kind=entry["kind"],
            description=entry["description"],
            examples_valid=tuple(entry.get("examples_valid", ())),
            examples_invalid=tuple(entry.get("examples_invalid", ())),
        )
        for name, entry in sorted(raw.items())
    }


def list_grammars() -> list[GrammarInfo]:
    """Every grammar of the library, sorted by name."""
    return list(_index().values())


def _info(name: str) -> GrammarInfo:
    info = _index().get(name)
    if info is None:
        known = ", ".join(_index())
        raise GrammarError(
            "grammar.unknown_name",
            "",
            f"no library grammar is named {name!r}",
            f"use one of: {known}",
        )
    return info


def grammar_source(name: str) -> str:
    """The file text of grammar ``name``, as stored; raises ``grammar.unknown_name``."""
    return _read(_info(name).file)


@functools.cache
def _read(file: str) -> str:
    return _folder().joinpath(file).read_text(encoding="utf-8")


def get_grammar(name: str) -> Regex | JsonSchema | Ebnf:
    """The spec of grammar ``name`` (a fresh copy); raises ``grammar.unknown_name``."""
    info = _info(name)
    text = _read(info.file)
    if info.kind == "regex":
        # editors add a final newline; a regex file holds exactly one line
        return Regex(text.rstrip("\r\n"))
    if info.kind == "ebnf":
        return Ebnf(text)
    return JsonSchema(_schema(info.file))


def resolve_ref(path: str) -> dict[str, Any]:
    """The library schema a ``$ref`` names, with its own library refs inlined.

    Accepts ``grammars/library/NAME.schema.json`` (optionally with a leading ``./`` or
    ``sgflow/``); raises :class:`GrammarError` ``grammar.unknown_name`` for anything else.
    Returns a fresh copy the caller may change.
    """
    file = _library_file(path)
    if file is None:
        raise GrammarError(
            "grammar.unknown_name",
            "",
            f"$ref {path!r} names no library schema",
            f"library refs look like {LIBRARY_PREFIX}NAME.schema.json; "
            "`sgflow grammars list` shows the names",
        )
    return _schema(file)


def _library_file(path: str) -> str | None:
    for prefix in ("./", "sgflow/"):
        path = path.removeprefix(prefix)
    if not path.startswith(LIBRARY_PREFIX):
        return None
    file = path[len(LIBRARY_PREFIX) :]
    files = {info.file for info in _index().values() if info.kind == "json_schema"}
    return file if file in files else None


def _schema(file: str) -> dict[str, Any]:
    return copy.deepcopy(_inlined(file))


@functools.cache
def _inlined(file: str, depth: int = 0) -> dict[str, Any]:
    if depth > _MAX_INLINE_DEPTH:
        raise GrammarError(
            "grammar.ref_cycle",
            "",
            f"library schemas refer to each other more than {_MAX_INLINE_DEPTH} deep at {file}",
            "break the cycle between the library files",
        )
    schema = json.loads(_read(file))
    inlined: dict[str, Any] = _inline_refs(schema, depth)
    return inlined


def _inline_refs(value: Any, depth: int) -> Any:
    if isinstance(value, list):
        return [_inline_refs(v, depth) for v in value]
    if not isinstance(value, dict):
        return value
    ref = value.get("$ref")
    file = _library_file(ref) if isinstance(ref, str) else None
    if file is not None:
        target = {k: v for k, v in _inlined(file, depth + 1).items() if k != "$schema"}
        siblings = {k: _inline_refs(v, depth) for k, v in value.items() if k != "$ref"}
        return {**copy.deepcopy(target), **siblings}
    return {k: _inline_refs(v, depth) for k, v in value.items()}
