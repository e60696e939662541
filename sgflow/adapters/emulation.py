"""Lowering a step's constraint to what one engine enforces, exactly.

- ``native``: sent as it is.
- a regex on an engine with only JSON Schema: a JSON string schema whose ``pattern`` is the
  regex anchored (``^(?:…)$``); the engine's converter turns the pattern into a grammar,
  so the model writes a JSON string, which :func:`unwrap` decodes back to the text.
- llama.cpp's (and so Ollama's) ``json-schema-to-grammar`` reads only part of the regex
  language in a ``pattern`` and accepts *any* string for the rest (a warning on the server's
  stderr, HTTP 200): :func:`llama_pattern` rewrites what it lacks exactly (``\\d``, ``\\w``,
  ``\\s`` as classes) and refuses what cannot be rewritten (lookaround, flags, named
  groups, backreferences, ``\\b``, inner anchors) before anything is sent;
- EBNF on llama.cpp: translated to GBNF (:mod:`sgflow.adapters.gbnf`), exact or refused.
- ``select`` without prompt log-probabilities: a generation constrained to the choices
  (a regex alternation, a GBNF alternation, or a JSON string ``enum``), greedy.

:class:`Unsupported` is raised where the engine cannot enforce the feature at all; the
planner (:mod:`sgflow.adapters.plan`) finds those before a run starts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sgflow.adapters.base import LLAMA_JSON_KEYWORDS, Capabilities
from sgflow.adapters.gbnf import Untranslatable, to_gbnf

__all__ = ["Lowered", "Unsupported", "choice_constraint", "llama_pattern", "lower", "unwrap"]

_REGEX_META = re.compile(r"([.^$|?*+()\[\]{}\\])")


@dataclass(frozen=True)
class Lowered:
    """What the engine is asked to enforce; ``wrapped``: the answer is a JSON string whose
    value is the text."""

    constraint: str
    source: str | None
    wrapped: bool = False


class Unsupported(ValueError):
    def __init__(self, feature: str, caps: Capabilities, reason: str) -> None:
        super().__init__(f"{caps.name} cannot enforce {feature}: {reason}")
        self.feature = feature
        self.engine = caps.kind
        self.reason = reason


def _string_schema(pattern: str) -> str:
    return json.dumps({"type": "string", "pattern": f"^(?:{pattern})$"})


_CLASSES = {"d": "0-9", "w": "a-zA-Z0-9_", "s": " \\t\\n\\r\\x0C\\x0B"}
_HEX = {"x": 2, "u": 4, "U": 8}
_META = set('.*+?(){}|^$[]\\-"')
_CONTROL = {"t": "\\t", "n": "\\n", "r": "\\r", "f": "\\x0C", "v": "\\x0B"}


class _PatternRefused(ValueError):
    pass


def _escape(regex: str, i: int, in_class: bool) -> tuple[str, int]:
    """The llama.cpp form of the escape at ``regex[i]`` (a backslash) and where it ends."""
    if i + 1 >= len(regex):
        raise _PatternRefused("a trailing backslash")
    e = regex[i + 1]
    if e in _HEX:
        digits = regex[i + 2 : i + 2 + _HEX[e]]
        if len(digits) != _HEX[e] or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise _PatternRefused(f"the escape \\{e}{digits}")
        return regex[i : i + 2 + _HEX[e]], i + 2 + _HEX[e]
    if e.lower() in _CLASSES:
        chars = _CLASSES[e.lower()]
        if e.islower():
            return (chars if in_class else f"[{chars}]"), i + 2
        if in_class:
            raise _PatternRefused(f"\\{e} inside a character class")
        return f"[^{chars}]", i + 2
    if e in _CONTROL:
        return _CONTROL[e], i + 2
    if e in _META:
        return "\\" + e, i + 2
    if not e.isalnum():
        return e, i + 2  # an escaped character that needs no escape: itself
    raise _PatternRefused(f"\\{e} (word boundaries, backreferences, properties)")


def llama_pattern(regex: str) -> str:
    """``regex`` (a whole-match regex) in the part of the regex language llama.cpp's
    ``json-schema-to-grammar`` reads; raises ``ValueError`` naming what it cannot read."""
    body = regex[1:] if regex.startswith("^") else regex
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    out: list[str] = []
    i, in_class = 0, False
    while i < len(body):
        c = body[i]
        if c == "\\":
            piece, i = _escape(body, i, in_class)
            out.append(piece)
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if body[i + 1 : i + 2] == "^":
                out.append("[^")
                i += 2
                continue
        elif c == "(" and body[i + 1 : i + 2] == "?":
            if body[i + 2 : i + 3] != ":":
                raise _PatternRefused("(?… other than (?: (lookaround, flags, named groups)")
            out.append("(?:")
            i += 3
            continue
        elif c in "^$":
            raise _PatternRefused(f"an anchor {c} inside the pattern")
        out.append(c)
        i += 1
    if in_class:
        raise _PatternRefused("an unclosed character class")
    return "".join(out)


def lower(kind: str, source: str | None, caps: Capabilities) -> Lowered:
    """``kind`` (``free``, ``regex``, ``json_schema``, ``ebnf``) with ``source``, as
    ``caps``' engine can enforce it; raises :class:`Unsupported`."""
    if kind == "free":
        return Lowered("free", None)
    how = caps.enforcement(kind)
    if kind == "json_schema" and caps.json_needs_properties and source is not None:
        schema = json.loads(source)
        if not (isinstance(schema, dict) and "properties" in schema):
            raise Unsupported(
                kind, caps, "its grammar needs an object with `properties` at the top"
            )
    if how.support == "native":
        return Lowered(kind, source)
    if how.support == "refused":
        raise Unsupported(kind, caps, how.how)
    assert source is not None
    if kind == "regex" and caps.json_schema.support == "native":
        pattern = source
        if caps.json_keywords is LLAMA_JSON_KEYWORDS:  # llama.cpp's converter: Ollama too
            try:
                pattern = llama_pattern(source)
            except _PatternRefused as exc:
                reason = f"its JSON Schema pattern cannot say {exc} (it would accept anything)"
                raise Unsupported(kind, caps, reason) from None
        return Lowered("json_schema", _string_schema(pattern), wrapped=True)
    if kind == "ebnf" and caps.kind == "llamacpp":
        try:
            return Lowered("ebnf", to_gbnf(source))
        except Untranslatable as exc:
            raise Unsupported(kind, caps, f"no exact GBNF translation: {exc}") from None
    raise Unsupported(kind, caps, how.how)


def _regex_literal(text: str) -> str:
    return _REGEX_META.sub(r"\\\1", text)


def _gbnf_literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def choice_constraint(choices: list[str], caps: Capabilities) -> Lowered:
    """A constraint whose only answers are ``choices``, in what ``caps`` enforces."""
    if caps.regex.support == "native":
        return Lowered("regex", "|".join(f"(?:{_regex_literal(c)})" for c in choices))
    if caps.ebnf.support != "refused" and caps.kind == "llamacpp":
        return Lowered("ebnf", "root ::= " + " | ".join(_gbnf_literal(c) for c in choices) + "\n")
    if caps.json_schema.support == "native":
        return Lowered("json_schema", json.dumps({"type": "string", "enum": choices}), True)
    raise Unsupported("select", caps, caps.select.how)


def unwrap(text: str) -> str:
    """The text a wrapped answer stands for; the raw text when it is not a JSON string
    (cut off, say): validation after generation then finds it invalid."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text
