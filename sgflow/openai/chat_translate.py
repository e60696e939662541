"""``POST /v1/chat/completions`` read into a :class:`~sgflow.openai.conversation.Conversation`.

``system``/``developer`` messages before the first other message form the system text;
later ones are system turns; ``tool`` messages are user turns "Result of `f` (call …)"; an
assistant's ``tool_calls`` are written as the JSON the model is asked to produce. Only text
content is supported (images, audio and files are refused by name). The rest of the mapping
is in :mod:`sgflow.openai.translate`.
"""

from __future__ import annotations

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
    Tool,
    ToolMode,
    Turn,
    calls_text,
    parse_arguments,
    tool_result_text,
)
from sgflow.openai.plan import Plan, PlanOptions, plan_conversation
from sgflow.openai.schemas import NO_PARAMETERS
from sgflow.openai.translate import (
    allowed_names,
    invalid,
    named_tool,
    refuse_set,
    sampling,
    stop_sequences,
    tool_mode,
    unique_tools,
    unsupported,
)

__all__ = ["chat_conversation", "message_text", "plan_chat"]


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
    return unique_tools(tools)


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
    refuse_set(
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
        allowed = named_tool(choice.function.name, tools, "/tool_choice/function/name")
        parallel = False
    elif isinstance(choice, AllowedToolsChoice):
        mode = choice.allowed_tools.mode
        allowed = allowed_names(
            choice.allowed_tools.tools, tools, "/tool_choice/allowed_tools/tools"
        )
    else:
        mode, allowed = tool_mode(choice, tools, "/tool_choice")
    max_field = "/max_completion_tokens" if req.max_completion_tokens else "/max_tokens"
    return Conversation(
        model=req.model,
        system=system,
        system_field="/messages/0",
        turns=tuple(turns),
        sampling=sampling(
            max_tokens=req.max_completion_tokens or req.max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            stop=stop_sequences(req.stop),
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
