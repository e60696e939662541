"""Lowering a step's constraint to what one engine enforces, exactly.

- ``native``: sent as it is.
- a regex on an engine with only JSON Schema: a JSON string schema whose ``pattern`` is the
  regex anchored (``^(?:…)$``); the engine's converter turns the pattern into a grammar,
  so the model writes a JSON string, which :func:`unwrap` decodes back to the text.
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

from sgflow.adapters.base import Capabilities
from sgflow.adapters.gbnf import Untranslatable, to_gbnf

__all__ = ["Lowered", "Unsupported", "choice_constraint", "lower", "unwrap"]

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
        return Lowered("json_schema", _string_schema(source), wrapped=True)
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
