"""Chat completion and Responses requests, read into a :class:`Conversation` and planned.

:func:`plan_chat` and :func:`plan_responses` are the entry points: a parsed request in, a
:class:`~sgflow.openai.plan.Plan` out (or an :class:`~sgflow.errors.SgflowError` naming the
request's field). What each OpenAI field becomes:

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
from sgflow.openai.chat_request import (
    AllowedToolsChoice,
    AssistantMessage,
    ChatRequest,
    ContentPart,
    FunctionMessage,
    JsonObjectFormat,
    JsonSchemaFormat,
    NamedToolChoice,
    ToolMessage,
    UserMessage,
)
from sgflow.openai.conversation import (
    Conversation,
    OutputFormat,
    Sampling,
    Tool,
    ToolMode,
    Turn,
    calls_text,
    parse_arguments,
    tool_result_text,
)
from sgflow.openai.plan import Plan, PlanOptions, plan_conversation
from sgflow.openai.responses_request import (
    AllowedTools,
    InputItem,
    InputPart,
    JsonObject,
    JsonSchemaText,
    NamedFunction,
    ResponsesRequest,
)
from sgflow.openai.schemas import NO_PARAMETERS

__all__ = [
    "chat_conversation",
    "item_text",
    "message_text",
    "plan_chat",
    "plan_responses",
    "responses_conversation",
    "responses_echo",
    "unsupported",
]

MAX_STOP = 4


def unsupported(what: str, field: str, hint: str | None = None) -> SgflowError:
    """The 400 for an OpenAI parameter or value sgflow does not support."""
    return SgflowError("openai.unsupported", f"{what} is not supported", field=field, hint=hint)


def invalid(message: str, field: str, **extra: Any) -> SgflowError:
    return SgflowError("request.invalid", message, field=field, extra=extra or None)


# -- shared --------------------------------------------------------------------------------------


def _refuse_set(values: dict[str, Any]) -> None:
    """Refuse each parameter whose value is not neutral (None, False, 0, empty)."""
    for name, value in values.items():
        if value not in (None, False, 0, 0.0, {}, []):
            raise unsupported(f"`{name}`", f"/{name}")


def _sampling(
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


def _tool_mode(
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


def _named(name: str, tools: tuple[Tool, ...], field: str) -> tuple[str, ...]:
    if name not in {t.name for t in tools}:
        raise invalid(f"`tool_choice` names `{name}`, which is not among `tools`", field)
    return (name,)


def _allowed(entries: list[dict[str, Any]], tools: tuple[Tool, ...], field: str) -> tuple[str, ...]:
    known = {t.name for t in tools}
    names: list[str] = []
    for i, entry in enumerate(entries):
        fn = entry.get("function")
        name = fn.get("name") if isinstance(fn, dict) else entry.get("name")
        if entry.get("type") != "function" or not isinstance(name, str) or name not in known:
            raise invalid(f"allowed tool {i} is not one of `tools`", f"{field}/{i}")
        names.append(name)
    return tuple(n for n in (t.name for t in tools) if n in names)


def _stop(stop: str | list[str] | None) -> tuple[str, ...]:
    items = [stop] if isinstance(stop, str) else list(stop or [])
    if len(items) > MAX_STOP:
        raise invalid(f"`stop` takes up to {MAX_STOP} sequences", "/stop", limit=MAX_STOP)
    if any(not s for s in items):
        raise invalid("`stop` sequences must not be empty", "/stop")
    return tuple(items)


def _unique_tools(tools: list[Tool]) -> tuple[Tool, ...]:
    seen: set[str] = set()
    for tool in tools:
        if tool.name in seen:
            raise invalid(f"two tools are named `{tool.name}`", tool.field.rsplit("/", 1)[0])
        seen.add(tool.name)
    return tuple(tools)


# -- chat ----------------------------------------------------------------------------------------


def message_text(content: str | list[ContentPart] | None, field: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if part.type == "text" and part.text is not None:
            texts.append(part.text)
        elif part.type == "refusal" and part.refusal is not None:
            texts.append(part.refusal)
        else:
            raise unsupported(
                f"content of type `{part.type}`",
                f"{field}/{j}",
                hint="sgflow's models read text: send text parts only",
            )
    return "\n".join(texts)


def _chat_turns(req: ChatRequest) -> tuple[str | None, list[Turn]]:
    system: list[str] = []
    turns: list[Turn] = []
    call_names: dict[str, str] = {}
    for i, msg in enumerate(req.messages):
        where = f"/messages/{i}"
        if isinstance(msg, FunctionMessage):
            raise unsupported("the `function` role", f"{where}/role", hint="use `tool` messages")
        if isinstance(msg, UserMessage):
            turns.append(Turn("user", message_text(msg.content, f"{where}/content"), where))
        elif isinstance(msg, AssistantMessage):
            text = message_text(msg.content, f"{where}/content") or (msg.refusal or "")
            calls = []
            for k, call in enumerate(msg.tool_calls or []):
                if call.type != "function" or call.function is None:
                    raise unsupported(
                        f"a tool call of type `{call.type}`", f"{where}/tool_calls/{k}/type"
                    )
                call_names[call.id] = call.function.name
                calls.append((call.function.name, parse_arguments(call.function.arguments)))
            if calls:
                text = f"{text}\n{calls_text(calls)}" if text else calls_text(calls)
            turns.append(Turn("assistant", text, where))
        elif isinstance(msg, ToolMessage):
            output = message_text(msg.content, f"{where}/content")
            name = call_names.get(msg.tool_call_id)
            turns.append(Turn("user", tool_result_text(name, msg.tool_call_id, output), where))
        else:  # system, developer
            text = message_text(msg.content, f"{where}/content")
            if turns:
                turns.append(Turn("system", text, where))
            else:
                system.append(text)
    return ("\n\n".join(system) if system else None), turns


def _chat_tools(req: ChatRequest) -> tuple[Tool, ...]:
    tools = []
    for i, tool in enumerate(req.tools or []):
        where = f"/tools/{i}"
        if tool.type != "function":
            raise unsupported(f"a tool of type `{tool.type}`", f"{where}/type")
        if tool.function is None:
            raise invalid("a function tool needs `function`", f"{where}/function")
        fn = tool.function
        tools.append(
            Tool(
                name=fn.name,
                description=fn.description,
                parameters=fn.parameters if fn.parameters is not None else dict(NO_PARAMETERS),
                strict=bool(fn.strict or tool.strict),
                field=f"{where}/function/parameters",
                param=f"tools[{i}].function.parameters",
            )
        )
    return _unique_tools(tools)


def _chat_format(req: ChatRequest) -> OutputFormat:
    fmt = req.response_format
    if isinstance(fmt, JsonObjectFormat):
        return OutputFormat("json_object")
    if isinstance(fmt, JsonSchemaFormat):
        spec = fmt.json_schema
        return OutputFormat(
            "json_schema",
            schema=spec.schema_,
            name=spec.name,
            strict=bool(spec.strict),
            field="/response_format/json_schema/schema",
            param="response_format",
        )
    return OutputFormat("text")


def chat_conversation(req: ChatRequest, options: PlanOptions | None = None) -> Conversation:
    """``req`` as a :class:`Conversation` (see the module docstring); raises
    :class:`SgflowError` naming the field it cannot honour."""
    options = options or PlanOptions()
    _refuse_set(
        {
            "logprobs": req.logprobs,
            "top_logprobs": req.top_logprobs,
            "logit_bias": req.logit_bias,
            "frequency_penalty": req.frequency_penalty,
            "presence_penalty": req.presence_penalty,
            "audio": req.audio,
            "prediction": req.prediction,
            "web_search_options": req.web_search_options,
            "functions": req.functions,
            "function_call": req.function_call,
        }
    )
    if req.modalities is not None and set(req.modalities) - {"text"}:
        raise unsupported("output modalities other than `text`", "/modalities")
    if (
        req.max_tokens is not None
        and req.max_completion_tokens is not None
        and req.max_tokens != req.max_completion_tokens
    ):
        raise invalid("`max_tokens` and `max_completion_tokens` disagree; send one", "/max_tokens")
    n = req.n or 1
    if n > options.max_n:
        raise SgflowError(
            "limit.fork_width",
            f"n is {n}; the limit is {options.max_n}",
            field="/n",
            limit=options.max_n,
            hint="ask for fewer choices per request",
        )
    system, turns = _chat_turns(req)
    tools = _chat_tools(req)
    choice = req.tool_choice
    parallel = req.parallel_tool_calls is not False
    if isinstance(choice, NamedToolChoice):
        mode: ToolMode = "required"
        allowed = _named(choice.function.name, tools, "/tool_choice/function/name")
        parallel = False
    elif isinstance(choice, AllowedToolsChoice):
        mode = choice.allowed_tools.mode
        allowed = _allowed(choice.allowed_tools.tools, tools, "/tool_choice/allowed_tools/tools")
    else:
        mode, allowed = _tool_mode(choice, tools, "/tool_choice")
    max_field = "/max_completion_tokens" if req.max_completion_tokens else "/max_tokens"
    return Conversation(
        model=req.model,
        system=system,
        system_field="/messages/0",
        turns=tuple(turns),
        sampling=_sampling(
            max_tokens=req.max_completion_tokens or req.max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            stop=_stop(req.stop),
            max_field=max_field,
            options=options,
        ),
        format=_chat_format(req),
        tools=tools,
        tool_mode=mode,
        allowed=allowed if mode != "none" else (),
        parallel=parallel,
        n=n,
        stream=bool(req.stream),
        include_usage=bool(req.stream and req.stream_options and req.stream_options.include_usage),
    )


def plan_chat(req: ChatRequest, options: PlanOptions | None = None) -> Plan:
    """The plan (program, inputs, builder settings) that answers a chat completion request."""
    options = options or PlanOptions()
    conv = chat_conversation(req, options)
    return plan_conversation(conv, endpoint="chat", options=options)


# -- responses -----------------------------------------------------------------------------------


def item_text(content: str | list[InputPart] | None, field: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if part.type in ("input_text", "output_text", "text") and part.text is not None:
            texts.append(part.text)
        elif part.type == "refusal" and part.refusal is not None:
            texts.append(part.refusal)
        else:
            raise unsupported(
                f"content of type `{part.type}`",
                f"{field}/{j}",
                hint="sgflow's models read text: send text parts only",
            )
    return "\n".join(texts)


def _responses_turns(items: list[InputItem]) -> list[Turn]:
    turns: list[Turn] = []
    call_names: dict[str, str] = {}
    pending: list[tuple[str, Any]] = []  # consecutive function_call items: one assistant turn
    pending_at = ""

    def flush() -> None:
        if pending:
            turns.append(Turn("assistant", calls_text(list(pending)), pending_at))
            pending.clear()

    for i, item in enumerate(items):
        where = f"/input/{i}"
        kind = item.type or "message"
        if kind == "function_call":
            if item.name is None or item.arguments is None:
                raise invalid("a function_call item needs `name` and `arguments`", where)
            if item.call_id:
                call_names[item.call_id] = item.name
            pending_at = pending_at if pending else where
            pending.append((item.name, parse_arguments(item.arguments)))
            continue
        flush()
        if kind == "function_call_output":
            output = item_text(item.output, f"{where}/output")
            name = call_names.get(item.call_id or "") or item.name
            turns.append(Turn("user", tool_result_text(name, item.call_id, output), where))
        elif kind == "message":
            if item.role is None:
                raise invalid("a message item needs a `role`", f"{where}/role")
            role = "system" if item.role == "developer" else item.role
            turns.append(Turn(role, item_text(item.content, f"{where}/content"), where))
        else:
            raise unsupported(f"an input item of type `{kind}`", f"{where}/type")
    flush()
    return turns


def _responses_tools(req: ResponsesRequest) -> tuple[Tool, ...]:
    tools = []
    for i, tool in enumerate(req.tools or []):
        where = f"/tools/{i}"
        if tool.type != "function":
            raise unsupported(f"a tool of type `{tool.type}`", f"{where}/type")
        nested = (tool.model_extra or {}).get("function")
        if tool.name is None and isinstance(nested, dict):
            # chat's spelling ({"type": "function", "function": {…}}), as
            # `responses.create(tools=[pydantic_function_tool(…)])` sends it
            tools.append(_nested_tool(nested, i, where))
            continue
        if tool.name is None:
            raise invalid("a function tool needs a `name`", f"{where}/name")
        tools.append(
            Tool(
                name=tool.name,
                description=tool.description,
                parameters=tool.parameters if tool.parameters is not None else dict(NO_PARAMETERS),
                strict=bool(tool.strict),
                field=f"{where}/parameters",
                param=f"tools[{i}].parameters",
            )
        )
    return _unique_tools(tools)


def _nested_tool(function: dict[str, Any], i: int, where: str) -> Tool:
    from pydantic import ValidationError

    from sgflow.openai.chat_request import ChatFunction

    try:
        fn = ChatFunction.model_validate(function)
    except ValidationError as exc:
        raise invalid(f"tool {i}: {exc.errors()[0]['msg']}", f"{where}/function") from None
    return Tool(
        name=fn.name,
        description=fn.description,
        parameters=fn.parameters if fn.parameters is not None else dict(NO_PARAMETERS),
        strict=bool(fn.strict),
        field=f"{where}/function/parameters",
        param=f"tools[{i}].function.parameters",
    )


def _responses_format(req: ResponsesRequest) -> OutputFormat:
    fmt = req.text.format if req.text is not None else None
    if isinstance(fmt, JsonObject):
        return OutputFormat("json_object")
    if isinstance(fmt, JsonSchemaText):
        return OutputFormat(
            "json_schema",
            schema=fmt.schema_,
            name=fmt.name,
            strict=bool(fmt.strict),
            field="/text/format/schema",
            param="text.format.schema",
        )
    return OutputFormat("text")


def responses_conversation(
    req: ResponsesRequest, options: PlanOptions | None = None
) -> Conversation:
    """``req`` as a :class:`Conversation`; raises :class:`SgflowError` naming the field."""
    options = options or PlanOptions()
    _refuse_set(
        {
            "previous_response_id": req.previous_response_id,
            "conversation": req.conversation,
            "background": req.background,
            "prompt": req.prompt,
            "top_logprobs": req.top_logprobs,
            "include": req.include,
        }
    )
    if req.reasoning and any(v is not None for v in req.reasoning.values()):
        raise unsupported("`reasoning`", "/reasoning")
    if isinstance(req.input, str):
        turns = [Turn("user", req.input, "/input")]
    else:
        turns = _responses_turns(req.input)
    tools = _responses_tools(req)
    choice = req.tool_choice
    parallel = req.parallel_tool_calls is not False
    if isinstance(choice, NamedFunction):
        mode: ToolMode = "required"
        allowed = _named(choice.name, tools, "/tool_choice/name")
        parallel = False
    elif isinstance(choice, AllowedTools):
        mode = choice.mode
        allowed = _allowed(choice.tools, tools, "/tool_choice/tools")
    else:
        mode, allowed = _tool_mode(choice, tools, "/tool_choice")
    return Conversation(
        model=req.model,
        system=req.instructions or None,
        system_field="/instructions",
        turns=tuple(turns),
        sampling=_sampling(
            max_tokens=req.max_output_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            stop=(),
            max_field="/max_output_tokens",
            options=options,
        ),
        format=_responses_format(req),
        tools=tools,
        tool_mode=mode,
        allowed=allowed if mode != "none" else (),
        parallel=parallel,
        max_calls=req.max_tool_calls if parallel else None,
        stream=bool(req.stream),
        include_usage=bool(req.stream),
    )


def responses_echo(req: ResponsesRequest, tools: tuple[Tool, ...] = ()) -> dict[str, Any]:
    """The request fields a ``Response`` object repeats (``tools`` as read)."""
    choice = req.tool_choice
    return {
        "instructions": req.instructions,
        "metadata": req.metadata or {},
        "temperature": req.temperature,
        "top_p": req.top_p,
        "max_output_tokens": req.max_output_tokens,
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "tool_choice": (
            choice.model_dump(exclude_none=True)
            if choice is not None and not isinstance(choice, str)
            else (choice or "auto")
        ),
        "tools": [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "strict": t.strict,
            }
            for t in tools
        ],
        "text": {"format": req.text.format.model_dump(by_alias=True, exclude_none=True)}
        if req.text is not None and req.text.format is not None
        else {"format": {"type": "text"}},
        "user": req.user,
        "store": False,
    }


def plan_responses(req: ResponsesRequest, options: PlanOptions | None = None) -> Plan:
    """The plan that answers a Responses request."""
    options = options or PlanOptions()
    conv = responses_conversation(req, options)
    return plan_conversation(
        conv, endpoint="responses", options=options, echo=responses_echo(req, conv.tools)
    )
