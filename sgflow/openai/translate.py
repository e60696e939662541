"""What both OpenAI endpoints' translations share: refusals, sampling, tool choice, stop.

The per-endpoint readers are :mod:`sgflow.openai.chat_translate` (``POST
/v1/chat/completions``) and :mod:`sgflow.openai.responses_translate` (``POST
/v1/responses``); both produce a :class:`~sgflow.openai.conversation.Conversation` that
:mod:`sgflow.openai.plan` turns into a program. What each OpenAI field becomes:

- messages / input items → turns: ``system`` and ``developer`` messages before the first
  other message (and ``instructions``) form the system text; later ones are system turns;
  ``tool`` messages and ``function_call_output`` items are user turns "Result of `f` (call
  …)"; an assistant's ``tool_calls`` / ``function_call`` items are written as the JSON the
  model is asked to produce. Only text content is supported (images, audio, files: 400).
- ``response_format`` / ``text.format`` → the worded answer's constraint; ``tools``,
  ``tool_choice`` (``none``, ``auto``, ``required``, a named function, ``allowed_tools``),
  ``parallel_tool_calls`` (default true, as OpenAI's; false for a named function) and
  ``max_tool_calls`` → the calls' constraint.
- ``max_completion_tokens`` / ``max_tokens`` / ``max_output_tokens`` (default
  ``PlanOptions.default_max_tokens``), ``temperature`` (default 1.0, OpenAI's), ``top_p``
  (0 means greedy), ``stop`` (at most 4, worded text only), ``n``.
- ``seed`` is accepted and not applied (sgflow's program format has no seed yet); ``user``,
  ``metadata``, ``store``, ``service_tier``, ``prompt_cache_key``, ``safety_identifier``,
  ``reasoning_effort``, ``verbosity``, ``truncation`` and ``stream_options.include_obfuscation``
  are accepted without effect. Everything else OpenAI defines (``logprobs``,
  ``logit_bias``, penalties, audio, ``previous_response_id``…) is refused with 400
  ``openai.unsupported`` when set to anything but its neutral value.
"""

from __future__ import annotations

from typing import Any

from sgflow.errors import SgflowError
from sgflow.openai.conversation import Sampling, Tool, ToolMode
from sgflow.openai.plan import PlanOptions

__all__ = [
    "MAX_STOP",
    "allowed_names",
    "invalid",
    "named_tool",
    "refuse_set",
    "sampling",
    "stop_sequences",
    "tool_mode",
    "unique_tools",
    "unsupported",
]

MAX_STOP = 4


def unsupported(what: str, field: str, hint: str | None = None) -> SgflowError:
    """The 400 for an OpenAI parameter or value sgflow does not support."""
    return SgflowError("openai.unsupported", f"{what} is not supported", field=field, hint=hint)


def invalid(message: str, field: str, **extra: Any) -> SgflowError:
    return SgflowError("request.invalid", message, field=field, extra=extra or None)


# -- shared --------------------------------------------------------------------------------------


def refuse_set(values: dict[str, Any]) -> None:
    """Refuse each parameter whose value is not neutral (None, False, 0, empty)."""
    for name, value in values.items():
        if value not in (None, False, 0, 0.0, {}, []):
            raise unsupported(f"`{name}`", f"/{name}")


def sampling(
    *,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: tuple[str, ...],
    max_field: str,
    options: PlanOptions,
) -> Sampling:
    tokens = max_tokens if max_tokens is not None else options.default_max_tokens
    if tokens > options.max_tokens:
        raise SgflowError(
            "limit.max_tokens",
            f"{max_field.strip('/')} is {tokens}; the limit is {options.max_tokens}",
            field=max_field,
            limit=options.max_tokens,
            hint="lower it",
        )
    temp = options.default_temperature if temperature is None else temperature
    p = 1.0 if top_p is None else top_p
    if p == 0:  # the smallest nucleus: the most likely token, i.e. greedy
        temp, p = 0.0, 1.0
    return Sampling(max_tokens=tokens, temperature=temp, top_p=p, stop=stop)


def tool_mode(
    choice: str | None, tools: tuple[Tool, ...], field: str
) -> tuple[ToolMode, tuple[str, ...]]:
    names = tuple(t.name for t in tools)
    if choice is None:
        return ("auto" if tools else "none"), names
    if choice in ("auto", "required") and not tools:
        if choice == "required":
            raise invalid("`tool_choice: required` needs `tools`", field)
        return "none", ()
    return choice, names  # type: ignore[return-value]


def named_tool(name: str, tools: tuple[Tool, ...], field: str) -> tuple[str, ...]:
    if name not in {t.name for t in tools}:
        raise invalid(f"`tool_choice` names `{name}`, which is not among `tools`", field)
    return (name,)


def allowed_names(
    entries: list[dict[str, Any]], tools: tuple[Tool, ...], field: str
) -> tuple[str, ...]:
    known = {t.name for t in tools}
    names: list[str] = []
    for i, entry in enumerate(entries):
        fn = entry.get("function")
        name = fn.get("name") if isinstance(fn, dict) else entry.get("name")
        if entry.get("type") != "function" or not isinstance(name, str) or name not in known:
            raise invalid(f"allowed tool {i} is not one of `tools`", f"{field}/{i}")
        names.append(name)
    return tuple(n for n in (t.name for t in tools) if n in names)


def stop_sequences(stop: str | list[str] | None) -> tuple[str, ...]:
    items = [stop] if isinstance(stop, str) else list(stop or [])
    if len(items) > MAX_STOP:
        raise invalid(f"`stop` takes up to {MAX_STOP} sequences", "/stop", limit=MAX_STOP)
    if any(not s for s in items):
        raise invalid("`stop` sequences must not be empty", "/stop")
    return tuple(items)


def unique_tools(tools: list[Tool]) -> tuple[Tool, ...]:
    seen: set[str] = set()
    for tool in tools:
        if tool.name in seen:
            raise invalid(f"two tools are named `{tool.name}`", tool.field.rsplit("/", 1)[0])
        seen.add(tool.name)
    return tuple(tools)
