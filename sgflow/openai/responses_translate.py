"""``POST /v1/responses`` read into a :class:`~sgflow.openai.conversation.Conversation`.

``instructions`` is the system text; ``input`` is a string (one user turn) or items:
messages of any role (an assistant's ``output_text`` sent back included),
``function_call`` items (consecutive ones are one assistant turn, written as the JSON the
model is asked to produce) and ``function_call_output`` items (user turns "Result of
`f` (call …)"). Tools are flat (``{"type": "function", "name", "parameters"}``); chat's
nested spelling is accepted too, as ``responses.create(tools=[pydantic_function_tool(…)])``
sends it. The rest of the mapping is in :mod:`sgflow.openai.translate`.
"""

from __future__ import annotations

from typing import Any

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
from sgflow.openai.translate import (
    allowed_names,
    invalid,
    named_tool,
    refuse_set,
    sampling,
    tool_mode,
    unique_tools,
    unsupported,
)

__all__ = ["item_text", "plan_responses", "responses_conversation", "responses_echo"]


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
    return unique_tools(tools)


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
    refuse_set(
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
        allowed = named_tool(choice.name, tools, "/tool_choice/name")
        parallel = False
    elif isinstance(choice, AllowedTools):
        mode = choice.mode
        allowed = allowed_names(choice.tools, tools, "/tool_choice/tools")
    else:
        mode, allowed = tool_mode(choice, tools, "/tool_choice")
    return Conversation(
        model=req.model,
        system=req.instructions or None,
        system_field="/instructions",
        turns=tuple(turns),
        sampling=sampling(
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
