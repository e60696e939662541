"""From a :class:`~sgflow.openai.conversation.Conversation` to one inline sgflow program.

Every OpenAI request runs as a durable queued run of a program, as ``POST /v1/extract``
does; this module writes that program. Its shape::

    system:  "{{ inputs.system }}"                      the caller's system text + tools
    context: [{role, content: "{{ inputs.turns[i] }}"}]  every message, in order
    steps:   the answer of one choice (below), or, for n > 1,
             a fork of n branches that each run those steps on the shared prefix
    output:  [{"decide"?, "answer"?, "calls"?}, …]     one object per choice

- Messages and tool descriptions are program *inputs*; templates only reference them, so
  ``{{ … }}`` written in a message is text, never template code, and the program's source
  is the same for every conversation of the same length (its compiled form is cached).
- A choice is: ``answer`` (worded: free text, or JSON under ``json_schema_from:
  inputs.answer_schema``); or ``calls`` (JSON under ``inputs.calls_schema``, which only
  admits calls to the allowed tools with valid arguments); or, with ``tool_choice: auto``,
  ``decide``, a ``select`` between ``answer`` and ``call`` scored by the model's
  likelihood, then the step it chose (the other is skipped by its ``if``).
- ``n`` > 1 is a ``fork`` with ``n`` branches, not n runs: one run to queue, follow and
  count against the tenant's concurrency, one run id to answer with, and the branches share
  the prompt's KV cache by construction (SGLang forks the state after the prefix). The cost:
  one branch that fails fails the run; :mod:`sgflow.openai.outcome` then still answers the
  branches that finished, and the others as ``length`` when the failure was a cut-off.
- Streaming and repair: a JSON answer whose every keyword the grammar enforces while
  decoding cannot be invalid, only cut off at ``max_tokens``; such a plan is ``live``: its
  text is streamed as it is generated and, when the request streams, the program gets
  ``max_attempts: 1``, so a cut-off ends the choice with ``finish_reason: length`` (OpenAI's
  behaviour) instead of a retry the client could not tell from the text it already has. A
  request that does not stream sees only the final answer, so a cut-off is first generated
  again (the executor's fresh, sampled attempt penalising repetition: a small model looping
  in an unbounded string usually escapes it), up to ``max_attempts``, then ``length``. When some keyword is only validated
  afterwards (``uniqueItems``, impossible dates…) an attempt may be rejected and repaired,
  so the plan is not live: constrained steps are sent only once they validated (the normal
  ``max_attempts``, default 3). Worded text answers are never retried and always stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sgflow.errors import SgflowError
from sgflow.openai.conversation import ANSWER, CALL, Conversation, system_text
from sgflow.openai.schemas import (
    Checked,
    ValidatedKeyword,
    calls_schema,
    check_calls,
    check_format,
    check_tool,
)
from sgflow.programs.checker import ProgramLimits
from sgflow.programs.templates import RenderLimits

__all__ = [
    "ANSWER_STEP",
    "CALLS_STEP",
    "DECIDE_STEP",
    "FORK_STEP",
    "Plan",
    "PlanOptions",
    "plan_conversation",
]

ANSWER_STEP = "answer"
CALLS_STEP = "calls"
DECIDE_STEP = "decide"
FORK_STEP = "choices"
PROGRAM_NAME = "openai-chat"

Mode = Literal["text", "json", "calls", "auto", "program"]


@dataclass(frozen=True)
class PlanOptions:
    """How requests become programs; defaults in the field values.

    ``default_max_tokens`` when the request sets none (OpenAI's default is "the context");
    ``default_temperature`` when it sets none (1.0, OpenAI's documented default);
    ``max_attempts`` per constrained step when it is not live; ``timeout_s`` the program's
    timeout; the limits are the program checker's (a request over them is refused with the
    request's own field named, not the program's).
    """

    default_max_tokens: int = 1024
    default_temperature: float = 1.0
    max_attempts: int = 3
    timeout_s: float = 120.0
    max_tokens: int = ProgramLimits.max_tokens_per_step
    max_total_tokens: int = ProgramLimits.max_total_tokens
    max_n: int = ProgramLimits.max_fork_width
    max_message_chars: int = RenderLimits.max_chars


@dataclass(frozen=True)
class Plan:
    """A request ready to run: the run body (:meth:`run_body`) and what the builders need.

    ``program`` is an inline program (a dict), or ``name@version`` of a stored one
    (programs as models); ``mode`` what a choice is (``text``/``json`` answer, ``calls``,
    ``auto`` choice between them, ``program`` output); ``live`` whether constrained steps
    stream as they are generated; ``tools`` the names a call may use (the strict ones in
    ``strict_tools``); ``validated`` the keywords checked only after generation; ``echo``
    request fields a Responses object repeats.
    """

    endpoint: Literal["chat", "responses"]
    model: str
    program: dict[str, Any] | str
    inputs: dict[str, Any]
    mode: Mode
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    live: bool = True
    parallel: bool = False
    max_tokens: int = 0
    tools: tuple[str, ...] = ()
    validated: tuple[ValidatedKeyword, ...] = ()
    echo: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] | None = None  # a program model's output is checked

    def run_body(self) -> dict[str, Any]:
        """The body of the run to submit (``POST /v1/runs``'s ``program`` and ``inputs``)."""
        return {"program": self.program, "inputs": self.inputs}

    def compiled_schemas(self) -> list[tuple[dict[str, Any], str]]:
        """The JSON Schemas the engine will compile for this answer, each with the request
        field it comes from (what a schema that does not compile is blamed on)."""
        out = []
        if self.inputs.get("answer_schema"):
            where = "/response_format" if self.endpoint == "chat" else "/text/format"
            out.append((self.inputs["answer_schema"], where))
        if self.inputs.get("calls_schema"):
            out.append((self.inputs["calls_schema"], "/tools"))
        return out

    @property
    def answer_is_json(self) -> bool:
        return self.mode in ("json", "program") or bool(self.inputs.get("answer_schema"))


def _answer_step(conv: Conversation, answer: Checked | None, **extra: Any) -> dict[str, Any]:
    s = conv.sampling
    gen: dict[str, Any] = {
        "max_tokens": s.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
    }
    if answer is not None:
        gen["json_schema_from"] = "inputs.answer_schema"
    elif s.stop:
        gen["stop"] = list(s.stop)
    return {"id": ANSWER_STEP, **extra, "gen": gen}


def _calls_step(conv: Conversation, **extra: Any) -> dict[str, Any]:
    s = conv.sampling
    gen = {
        "json_schema_from": "inputs.calls_schema",
        "max_tokens": s.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
    }
    return {"id": CALLS_STEP, **extra, "gen": gen}


def _choice_steps(
    conv: Conversation, answer: Checked | None, calling: bool
) -> tuple[Mode, list[dict[str, Any]]]:
    if not calling:
        return ("json" if answer is not None else "text"), [_answer_step(conv, answer)]
    if conv.tool_mode == "required":
        return "calls", [_calls_step(conv)]
    return "auto", [
        {"id": DECIDE_STEP, "select": [ANSWER, CALL]},
        _answer_step(conv, answer, **{"if": f"steps.{DECIDE_STEP} == '{ANSWER}'"}),
        _calls_step(conv, **{"if": f"steps.{DECIDE_STEP} == '{CALL}'"}),
    ]


def _bounds(conv: Conversation, gens: int, options: PlanOptions) -> None:
    total = conv.n * gens * conv.sampling.max_tokens
    if total > options.max_total_tokens:
        raise SgflowError(
            "limit.total_tokens",
            f"n={conv.n} choices of up to {conv.sampling.max_tokens} tokens"
            + (" (an answer or a call each)" if gens > 1 else "")
            + f" may generate {total} tokens; the limit is {options.max_total_tokens}",
            field="/n" if conv.n > 1 else "/max_tokens",
            limit=options.max_total_tokens,
            hint="lower n or max_tokens",
        )
    texts = [(t.text, t.field) for t in conv.turns] + [(conv.system or "", conv.system_field)]
    for text, where in texts:
        if len(text) > options.max_message_chars:
            raise SgflowError(
                "limit.message_size",
                f"a message has {len(text)} characters; the limit is {options.max_message_chars}",
                field=where,
                limit=options.max_message_chars,
                hint="send long documents in smaller pieces",
            )


def _checked_tools(conv: Conversation) -> tuple[list[Any], tuple[ValidatedKeyword, ...]]:
    allowed = set(conv.allowed)
    pairs = [(t, check_tool(t)) for t in conv.tools]
    validated = tuple(v for t, c in pairs if t.name in allowed for v in c.validated)
    return [(t, c) for t, c in pairs if t.name in allowed], validated


def plan_conversation(
    conv: Conversation,
    *,
    endpoint: Literal["chat", "responses"],
    options: PlanOptions,
    echo: dict[str, Any] | None = None,
) -> Plan:
    """The program and inputs that answer ``conv``. Raises :class:`SgflowError` for a
    schema outside the strict subset or beyond sgflow's checker, or a request over a limit
    (``limit.total_tokens``, ``limit.message_size``)."""
    answer = check_format(conv.format)
    calling = conv.tool_mode != "none" and bool(conv.allowed)
    inputs: dict[str, Any] = {"turns": [t.text for t in conv.turns]}
    validated = answer.validated if answer is not None else ()
    if answer is not None:
        inputs["answer_schema"] = answer.schema
    if calling:
        pairs, tool_validated = _checked_tools(conv)
        validated += tool_validated
        inputs["calls_schema"] = calls_schema(
            pairs, parallel=conv.parallel, max_calls=conv.max_calls
        )
        check_calls(inputs["calls_schema"], pairs)
    mode, steps = _choice_steps(conv, answer, calling)
    _bounds(conv, sum(1 for s in steps if "gen" in s), options)
    system = system_text(
        conv.system,
        conv.tools,
        mode=conv.tool_mode if calling else "none",
        parallel=conv.parallel,
    )
    if system is not None:
        inputs["system"] = system
    live = not validated
    program = _program(conv, inputs, steps, live=live, options=options)
    return Plan(
        endpoint=endpoint,
        model=conv.model,
        program=program,
        inputs=inputs,
        mode=mode,
        n=conv.n,
        stream=conv.stream,
        include_usage=conv.include_usage,
        live=live,
        parallel=conv.parallel and calling,
        max_tokens=conv.sampling.max_tokens,
        tools=tuple(t.name for t in conv.tools if t.name in set(conv.allowed)),
        validated=validated,
        echo=dict(echo or {}),
    )


def _inputs_schema(inputs: dict[str, Any]) -> dict[str, Any]:
    types = {
        "system": {"type": "string"},
        "turns": {"type": "array", "items": {"type": "string"}},
        "answer_schema": {"type": "object"},
        "calls_schema": {"type": "object"},
    }
    return {
        "type": "object",
        "properties": {k: types[k] for k in types if k in inputs},
        "required": sorted(inputs),
        "additionalProperties": False,
    }


def _program(
    conv: Conversation,
    inputs: dict[str, Any],
    steps: list[dict[str, Any]],
    *,
    live: bool,
    options: PlanOptions,
) -> dict[str, Any]:
    ids = [s["id"] for s in steps]
    if conv.n == 1:
        body = steps
        output: Any = [{i: "{{ steps.%s }}" % i for i in ids}]  # noqa: UP031 (Jinja braces)
    else:
        body = [{"id": FORK_STEP, "fork": {"n": conv.n, "as": "index", "steps": steps}}]
        output = "{{ steps.%s }}" % FORK_STEP  # noqa: UP031
    # a streamed live answer is the text the client already has: never generated twice; an
    # answer the client has not seen yet may be, after a cut-off (a fresh, sampled attempt
    # penalising repetition) or an invalid value, as any program step is
    attempts = 1 if live and conv.stream else options.max_attempts
    gens = sum(1 for s in steps if "gen" in s)
    program: dict[str, Any] = {
        "program": PROGRAM_NAME,
        "version": 1,
        "description": "an OpenAI-compatible request (sgflow.openai)",
        "inputs": _inputs_schema(inputs),
        "context": [
            {"role": t.role, "content": "{{ inputs.turns[%d] }}" % i}  # noqa: UP031
            for i, t in enumerate(conv.turns)
        ],
        "steps": body,
        "output": {"value": output},
        "policy": {
            "on_invalid": "repair",
            "max_attempts": attempts,
            "timeout_s": options.timeout_s,
            "token_budget": max(1, conv.n * gens * conv.sampling.max_tokens * attempts),
        },
    }
    if "system" in inputs:
        program["system"] = "{{ inputs.system }}"
    return program
