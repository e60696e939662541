"""The one form both OpenAI endpoints are translated to, and the text of its prompt.

A chat completion request and a Responses request say the same things in two spellings
(messages vs input items, ``response_format`` vs ``text.format``, nested vs flat tools).
:mod:`sgflow.openai.translate` reads either into a :class:`Conversation`, and
:mod:`sgflow.openai.plan` turns a conversation into one sgflow program: one place decides
how a conversation is prompted and constrained.

The prompt text made here is deterministic (the same tools and system text give the same
bytes), and the parts every request of a conversation shares come first: the system text
with the tools' description, then the turns in order. The engine's prefix cache then reuses
everything up to the newest turn. Text written by the user (messages, tool descriptions,
tool results) only ever travels as program *inputs*, never as template source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ANSWER",
    "CALL",
    "Conversation",
    "OutputFormat",
    "Sampling",
    "Tool",
    "ToolMode",
    "Turn",
    "calls_text",
    "system_text",
    "tool_result_text",
]

Role = Literal["system", "user", "assistant"]
ToolMode = Literal["none", "auto", "required"]

ANSWER = "answer"
"""What the assistant says, under ``tool_choice: auto``, to answer in words."""
CALL = "call"
"""What the assistant says, under ``tool_choice: auto``, to call functions."""


@dataclass(frozen=True)
class Turn:
    """One turn of the conversation as the model sees it (tool results are user turns:
    the chat formats sgflow's engines use have no tool role)."""

    role: Role
    text: str
    field: str = ""  # the JSON pointer of the message it comes from, for errors


@dataclass(frozen=True)
class Tool:
    """A function the model may call. ``field`` is the JSON pointer of its parameters in
    the request body and ``param`` OpenAI's name for it (for errors)."""

    name: str
    description: str | None
    parameters: dict[str, Any]
    strict: bool
    field: str
    param: str


@dataclass(frozen=True)
class OutputFormat:
    """What a worded answer must be: ``text``, any JSON object, or JSON valid against
    ``schema`` (``name``/``strict`` as sent). ``field``/``param`` locate the schema."""

    kind: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool = False
    field: str = ""
    param: str = ""


@dataclass(frozen=True)
class Sampling:
    """``max_tokens`` per choice, ``temperature``, ``top_p``, ``stop`` (applied to worded
    text answers; a JSON answer ends where its grammar ends)."""

    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conversation:
    """A request, endpoint-neutral. ``tool_mode`` ``none`` (answer in words), ``auto``
    (choose between answering and calling), ``required`` (call); ``allowed`` the tool names a
    call may use (one for a named ``tool_choice``); ``parallel``: a call is a list of calls
    (at most ``max_calls``)."""

    model: str
    system: str | None
    turns: tuple[Turn, ...]
    sampling: Sampling
    format: OutputFormat = field(default_factory=OutputFormat)
    tools: tuple[Tool, ...] = ()
    tool_mode: ToolMode = "none"
    allowed: tuple[str, ...] = ()
    parallel: bool = False
    max_calls: int | None = None
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    system_field: str = ""  # where the system text comes from, for errors


_TOOLS_HEAD = (
    "# Functions\n\n"
    "You can call these functions. Each is described as JSON: its name, what it does, "
    "and a JSON Schema of its arguments.\n"
)
_ONE_CALL = (
    'To call a function, reply with only a JSON object: {"name": <the function\'s name>, '
    '"arguments": <an object of its arguments>}.'
)
_MANY_CALLS = (
    "To call functions, reply with only a JSON array of calls, each "
    '{"name": <the function\'s name>, "arguments": <an object of its arguments>}.'
)
_NO_CALLS = "Do not call them now: answer in words."
_CHOOSE = (
    f"First say `{CALL}` if you will call functions, or `{ANSWER}` if you will answer "
    "directly; then give the calls or the answer."
)


def _tool_json(tool: Tool) -> str:
    described: dict[str, Any] = {"name": tool.name}
    if tool.description:
        described["description"] = tool.description
    described["parameters"] = tool.parameters
    return json.dumps(described, ensure_ascii=False)


def system_text(
    system: str | None, tools: tuple[Tool, ...], *, mode: ToolMode, parallel: bool
) -> str | None:
    """The system turn: the caller's system text, then (with tools) their description and
    how to call them, which depends on ``mode``: ``auto`` adds how to choose between
    answering and calling, ``none`` says to answer in words (the tools stay described, as
    context). None when there is neither."""
    parts = [system] if system else []
    if tools:
        listing = "\n".join(_tool_json(t) for t in tools)
        if mode == "none":
            how = _NO_CALLS
        else:
            how = _MANY_CALLS if parallel else _ONE_CALL
            how += f" {_CHOOSE}" if mode == "auto" else ""
        parts.append(f"{_TOOLS_HEAD}{listing}\n\n{how}")
    return "\n\n".join(parts) if parts else None


def calls_text(calls: list[tuple[str, Any]]) -> str:
    """An assistant's earlier function calls, ``(name, arguments)``, written the way the
    model is asked to write them (one object, or an array of several)."""
    objects = [{"name": name, "arguments": arguments} for name, arguments in calls]
    return json.dumps(objects[0] if len(objects) == 1 else objects, ensure_ascii=False)


def tool_result_text(name: str | None, call_id: str | None, output: str) -> str:
    """A function's result as the user turn that carries it back to the model."""
    who = f"`{name}`" if name else "the function"
    call = f" (call {call_id})" if call_id else ""
    return f"Result of {who}{call}:\n{output}"


def parse_arguments(arguments: str) -> Any:
    """The arguments of an earlier call as JSON when they are JSON, else the text itself."""
    try:
        return json.loads(arguments)
    except (TypeError, ValueError):
        return arguments
