"""The compiled form of a program: a typed, immutable IR with a deterministic serialisation.

The compiler (``compiler.py``) lowers a checked :class:`~sgflow.programs.model.Program` to
this IR: named grammars and ``$ref``s are resolved, ``choices`` become a regex, defaults
are filled in. ``ProgramIR.to_dict()`` is stable (it is what the content hash covers and
what the compiler's tests assert); the executor interprets the IR on an SGLang backend.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Constraint", "ForkIR", "GenOp", "ProgramIR", "StepIR", "ThinkOp"]

ConstraintKind = Literal["free", "regex", "json_schema", "ebnf"]


@dataclass(frozen=True)
class Constraint:
    """What the grammar enforces during decoding. ``schema`` is kept for validation."""

    kind: ConstraintKind
    source: str | None = None
    schema: dict[str, Any] | None = None
    origin: str | None = None  # "grammar:iso-date", "choices", "$ref:…" for traces
    dynamic: str | None = None  # expression giving the JSON Schema at run time

    @property
    def is_json(self) -> bool:
        return self.kind == "json_schema"


@dataclass(frozen=True)
class GenOp:
    constraint: Constraint
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class ThinkOp:
    prompt: str
    max_tokens: int
    answer_prompt: str


@dataclass(frozen=True)
class ForkIR:
    over: str | None
    n: int | None
    var: str
    steps: tuple[StepIR, ...]


@dataclass(frozen=True)
class StepIR:
    id: str
    condition: str | None = None
    system: str | None = None
    user: str | None = None
    assistant: str | None = None
    gen: GenOp | None = None
    select: tuple[str, ...] | None = None
    think: ThinkOp | None = None
    fork: ForkIR | None = None


@dataclass(frozen=True)
class ProgramIR:
    name: str
    version: int
    inputs_schema: dict[str, Any]
    system: str | None
    context: tuple[tuple[str, str], ...]
    steps: tuple[StepIR, ...]
    output_value: Any
    output_schema: dict[str, Any] | None
    on_invalid: str
    max_attempts: int
    timeout_s: float
    token_budget: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def iter_steps(self) -> list[StepIR]:
        out: list[StepIR] = []

        def walk(steps: tuple[StepIR, ...]) -> None:
            for step in steps:
                out.append(step)
                if step.fork is not None:
                    walk(step.fork.steps)

        walk(self.steps)
        return out
