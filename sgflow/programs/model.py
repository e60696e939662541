"""The program format: what a user writes, as pydantic models.

A program is one conversation: a system prompt, optional static context (few-shot turns),
then steps that each add a user turn and let the assistant answer under a constraint. Every
step extends the prefix of the one before it, which is what makes prefix caching pay.
``programs/program.schema.json`` is generated from these models (``sgflow programs schema``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Fork",
    "Gen",
    "Message",
    "Output",
    "Policy",
    "Program",
    "Select",
    "Step",
    "Think",
]

_ID = r"^[a-z_][a-z0-9_]{0,63}$"
_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Gen(_Strict):
    """A generation. At most one constraint: ``regex``, ``json_schema``, ``json_schema_from``
    (an expression such as ``inputs.schema``, checked when the run starts), ``ebnf``,
    ``grammar`` (a name from the grammar library) or ``choices`` (one of the strings)."""

    regex: str | None = None
    json_schema: dict[str, Any] | None = None
    json_schema_from: str | None = Field(
        default=None, description="an expression giving the JSON Schema at run time"
    )
    ebnf: str | None = None
    grammar: str | None = None
    choices: list[str] | None = None
    max_tokens: int = Field(default=256, ge=1, description="default 256")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="default 0 (greedy)")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] | None = None

    def constraint_kinds(self) -> list[str]:
        return [
            k
            for k in ("regex", "json_schema", "json_schema_from", "ebnf", "grammar", "choices")
            if getattr(self, k) is not None
        ]


class Select(_Strict):
    """Pick one of ``choices`` by the model's likelihood (SGLang's ``select``)."""

    choices: list[str] = Field(min_length=1)


class Think(_Strict):
    """Let the model reason in free text, bounded, before the constrained answer."""

    prompt: str = "Think step by step, briefly."
    max_tokens: int = Field(default=128, ge=1, le=2048, description="default 128")
    answer_prompt: str = "Now give only the final answer."


class Message(_Strict):
    """A static turn (few-shot examples, context)."""

    role: Literal["system", "user", "assistant"]
    content: str


class Fork(_Strict):
    """Parallel branches sharing the prefix so far: ``over`` a list (each item bound to
    ``as``) or ``n`` times (``index`` bound to ``as``). Branch outputs are joined into a list
    under the fork step's id."""

    over: str | None = None
    n: int | None = Field(default=None, ge=1)
    as_: str = Field(default="item", alias="as", pattern=_ID)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> Fork:
        if (self.over is None) == (self.n is None):
            raise ValueError("a fork needs exactly one of `over` or `n`")
        return self


class Step(_Strict):
    id: str = Field(pattern=_ID, description="unique within the program; names the output")
    description: str | None = None
    if_: str | None = Field(default=None, alias="if", description="a Jinja expression")
    system: str | None = None
    user: str | None = None
    assistant: str | None = None
    gen: Gen | None = None
    select: list[str] | Select | None = None
    think: Think | None = None
    fork: Fork | None = None

    def select_choices(self) -> list[str] | None:
        if self.select is None:
            return None
        return self.select if isinstance(self.select, list) else self.select.choices

    def actions(self) -> list[str]:
        return [a for a in ("gen", "select", "fork", "assistant") if getattr(self, a) is not None]


Fork.model_rebuild()


class Output(_Strict):
    """The run's result: ``value`` is a structure whose strings are templates (a string that
    is exactly ``{{ expr }}`` keeps the expression's type), validated against ``schema``."""

    value: Any = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class Policy(_Strict):
    on_invalid: Literal["fail", "retry", "repair"] = "repair"
    max_attempts: int = Field(default=3, ge=1, le=10, description="per step, default 3")
    timeout_s: float = Field(default=120.0, gt=0, le=3600)
    token_budget: int = Field(default=8192, ge=1, description="completion tokens per run")


class Program(_Strict):
    program: str = Field(pattern=_NAME, description="the program's name")
    version: int = Field(default=1, ge=1)
    description: str | None = None
    inputs: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"}, description="JSON Schema of the inputs"
    )
    system: str | None = None
    context: list[Message] = Field(
        default_factory=list, description="static turns placed before the steps (few-shot)"
    )
    steps: list[Step] = Field(min_length=1)
    output: Output | None = None
    policy: Policy = Field(default_factory=Policy)
    shared: bool = Field(
        default=False, description="share the prefix cache across tenants (see DESIGN.md)"
    )
