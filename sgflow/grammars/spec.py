"""Constraint specs: what a generation must match, before any compilation.

Five kinds, one frozen dataclass each: :class:`Regex`, :class:`JsonSchema`, :class:`Ebnf`,
:class:`Choices` and :class:`Named` (a grammar of the library, resolved on use). Each has

- ``kind``: a stable string (``"regex"``, ``"json_schema"``, ``"ebnf"``, ``"choices"``, ``"named"``);
- ``content_hash()``: sha256 of the spec's canonical JSON, the key of every cache;
- ``to_sampling_params()``: the SGLang ``sampling_params`` entries that enforce it.

Specs are values: they do not validate themselves (that is :func:`~sgflow.grammars.check`'s
job, which reports every problem instead of the first), and they are never mutated — a
:class:`JsonSchema` keeps a reference to the caller's dict, so callers must not change it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, ClassVar, TypeAlias

__all__ = [
    "Choices",
    "Ebnf",
    "JsonSchema",
    "Named",
    "Regex",
    "Spec",
    "canonical_json",
    "choices_regex",
    "escape_regex",
]

# Characters with a meaning in xgrammar's (and Python's) regex syntax. ``re.escape`` escapes
# more (space, ``#``, ``&``, ``~``, ``-``), which xgrammar accepts but warns about on stderr
# for every compilation.
_META = set("\\.^$|?*+()[]{}")
_CONTROL = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\f": "\\f", "\v": "\\v"}


def escape_regex(text: str) -> str:
    """``text`` as a regex that matches exactly it, in the syntax xgrammar and ``re`` share."""
    out = []
    for ch in text:
        if ch in _META:
            out.append("\\" + ch)
        elif ch in _CONTROL:
            out.append(_CONTROL[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def choices_regex(options: list[str] | tuple[str, ...]) -> str:
    """A regex accepting exactly one of ``options``: ``(a|b|c)`` with each option escaped."""
    return "(" + "|".join(escape_regex(o) for o in options) + ")"


def canonical_json(value: Any) -> str:
    """Compact JSON with non-ASCII kept and key order *preserved*.

    Not sorted on purpose: xgrammar generates object properties in the order the schema
    declares them, so ``{"b": …, "a": …}`` and ``{"a": …, "b": …}`` are different
    constraints (and the order matters to a model: reasoning before answer).
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _sha256(kind: str, value: Any) -> str:
    text = f"{kind}\n{canonical_json(value)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Regex:
    """A regular expression the whole generation must match (xgrammar's dialect)."""

    pattern: str
    kind: ClassVar[str] = "regex"

    def content_hash(self) -> str:
        return _sha256(self.kind, self.pattern)

    def to_sampling_params(self) -> dict[str, str]:
        return {"regex": self.pattern}


@dataclasses.dataclass(frozen=True)
class Ebnf:
    """An EBNF grammar in xgrammar's GBNF-like syntax; ``root`` is the start rule."""

    grammar: str
    kind: ClassVar[str] = "ebnf"

    def content_hash(self) -> str:
        return _sha256(self.kind, self.grammar)

    def to_sampling_params(self) -> dict[str, str]:
        return {"ebnf": self.grammar}


@dataclasses.dataclass(frozen=True)
class JsonSchema:
    """A JSON Schema (draft 2020-12 unless ``$schema`` says otherwise) the output must match."""

    schema: dict[str, Any]
    kind: ClassVar[str] = "json_schema"

    def content_hash(self) -> str:
        return _sha256(self.kind, self.schema)

    def to_sampling_params(self) -> dict[str, str]:
        # SGLang takes the schema as a JSON string; one spelling keeps server caches warm
        return {"json_schema": canonical_json(self.schema)}

    def __hash__(self) -> int:  # the dict field is unhashable; hash the content instead
        return hash(self.content_hash())


@dataclasses.dataclass(frozen=True, init=False)
class Choices:
    """Exactly one of ``options``, compiled to a regex of escaped alternatives."""

    options: tuple[str, ...]
    kind: ClassVar[str] = "choices"

    def __init__(self, options: list[str] | tuple[str, ...]) -> None:
        object.__setattr__(self, "options", tuple(options))

    def content_hash(self) -> str:
        return _sha256(self.kind, list(self.options))

    def to_regex(self) -> Regex:
        return Regex(choices_regex(self.options))

    def to_sampling_params(self) -> dict[str, str]:
        return self.to_regex().to_sampling_params()


@dataclasses.dataclass(frozen=True)
class Named:
    """A grammar of the library by name (``sgflow grammars list``).

    ``to_sampling_params()`` and ``resolve()`` raise :class:`~sgflow.grammars.GrammarError`
    (``grammar.unknown_name``) for a name the library does not have.
    """

    name: str
    kind: ClassVar[str] = "named"

    def content_hash(self) -> str:
        return _sha256(self.kind, self.name)

    def resolve(self) -> Regex | JsonSchema | Ebnf:
        from sgflow.grammars.library import get_grammar  # the library imports this module

        return get_grammar(self.name)

    def to_sampling_params(self) -> dict[str, str]:
        return self.resolve().to_sampling_params()


Spec: TypeAlias = Regex | JsonSchema | Ebnf | Choices | Named
