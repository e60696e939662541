"""``POST /v1/chat/completions``: the request as pydantic models, lenient where the SDK needs it.

Inside messages, tools and content parts unknown keys are ignored: the SDK sends back what it
received (``parsed``, ``parsed_arguments``, ``refusal``, ``annotations``), Instructor puts
``name`` on tool messages, the Cookbook puts ``strict`` beside ``function``. At the top level
a key this model does not know is refused (400 ``request.invalid``), as OpenAI refuses an
unrecognized argument: a typo there (``max_token``, ``response_fromat``) would otherwise
silently change the answer. Known OpenAI parameters sgflow cannot honour are accepted by the
model and refused by the translation (400 ``openai.unsupported``) when set to anything but
their neutral value; parameters without effect on the answer (``user``, ``metadata``,
``store``, ``service_tier``, ``prompt_cache_key``…) are accepted and ignored.

:func:`parse_chat_request` turns a raw JSON body into :class:`ChatRequest` or raises
:class:`sgflow.errors.SgflowError` with the JSON pointer and OpenAI's ``param`` of the first
invalid field (``errors`` lists every one).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sgflow.errors import SgflowError

__all__ = [
    "NAME_PATTERN",
    "AssistantMessage",
    "ChatFunction",
    "ChatMessage",
    "ChatRequest",
    "ChatTool",
    "ContentPart",
    "DeveloperMessage",
    "FunctionMessage",
    "JsonObjectFormat",
    "JsonSchemaFormat",
    "JsonSchemaSpec",
    "NamedToolChoice",
    "StreamOptions",
    "SystemMessage",
    "TextFormat",
    "ToolCall",
    "ToolMessage",
    "UserMessage",
    "parse_chat_request",
    "validation_failure",
]

NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
"""A function or response-format name, as OpenAI restricts it."""

MAX_MESSAGES = 2048
MAX_TOOLS = 128


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    """A part of a message's content. Only ``text`` (and ``refusal`` in assistant messages)
    is supported; other types are parsed so the refusal can name them."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    refusal: str | None = None


Content = str | list[ContentPart]


class SystemMessage(_Lenient):
    role: Literal["system"]
    content: Content
    name: str | None = None


class DeveloperMessage(_Lenient):
    role: Literal["developer"]
    content: Content
    name: str | None = None


class UserMessage(_Lenient):
    role: Literal["user"]
    content: Content
    name: str | None = None


class FunctionCall(_Lenient):
    name: str
    arguments: str


class ToolCall(_Lenient):
    """A tool call in an assistant message sent back (``type`` other than ``function`` is
    refused by the translation)."""

    id: str
    type: str = "function"
    function: FunctionCall | None = None


class AssistantMessage(_Lenient):
    role: Literal["assistant"]
    content: Content | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    name: str | None = None


class ToolMessage(_Lenient):
    role: Literal["tool"]
    content: Content
    tool_call_id: str


class FunctionMessage(_Lenient):
    """The legacy ``function`` role (refused by the translation: use ``tool``)."""

    role: Literal["function"]
    content: str | None = None
    name: str


ChatMessage = Annotated[
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage,
    Field(discriminator="role"),
]


class TextFormat(_Lenient):
    type: Literal["text"]


class JsonObjectFormat(_Lenient):
    type: Literal["json_object"]


class JsonSchemaSpec(_Lenient):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class JsonSchemaFormat(_Lenient):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]


class ChatFunction(_Lenient):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(_Lenient):
    """A tool; only ``function`` tools are supported (``custom`` is refused). ``strict``
    beside ``function`` (the Cookbook's spelling) counts as ``function.strict``."""

    type: str = "function"
    function: ChatFunction | None = None
    strict: bool | None = None


class NamedFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: NamedFunction


class AllowedTools(_Lenient):
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]] = Field(min_length=1)


class AllowedToolsChoice(_Lenient):
    type: Literal["allowed_tools"]
    allowed_tools: AllowedTools


class StreamOptions(_Lenient):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``. ``None`` means "not sent"; defaults are
    applied by the translation (:mod:`sgflow.openai.translate`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    tools: list[ChatTool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: (
        Literal["none", "auto", "required"] | NamedToolChoice | AllowedToolsChoice | None
    ) = None
    parallel_tool_calls: bool | None = None
    # refused unless neutral (the translation names them)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    # accepted, without effect on the answer
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None


def validation_failure(exc: ValidationError, body: Any) -> SgflowError:
    """A pydantic error on a request ``body`` as one 400 ``request.invalid``: the first
    invalid field's JSON pointer and OpenAI ``param``, every one in ``errors``."""
    from sgflow.openai.errors import pointer_to_param

    items = []
    for e in exc.errors():
        loc = _body_path(body, tuple(e.get("loc", ())), missing=e.get("type") == "missing")
        pointer = "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in loc)
        message = e.get("msg", "invalid")
        if e.get("type") == "extra_forbidden" and loc:
            message = f"unrecognized request argument supplied: {loc[-1]}"
        items.append({"field": pointer, "message": message, "type": e.get("type")})
    first = items[0] if items else {"field": "", "message": "invalid request", "type": ""}
    return SgflowError(
        "request.invalid",
        f"{pointer_to_param(first['field']) or 'body'}: {first['message']}",
        field=first["field"],
        extra={
            "openai_code": "unknown_parameter" if first["type"] == "extra_forbidden" else None,
            "errors": [{"field": i["field"], "message": i["message"]} for i in items],
        },
    )


def _body_path(body: Any, loc: tuple[Any, ...], *, missing: bool) -> list[Any]:
    """The part of a pydantic error location that is a path in ``body``: pydantic also puts
    the union member it tried in the location (``'user'``, ``'str'``, ``'list[…]'``), which
    is no key of the body. A missing field (the last part) is kept."""
    path: list[Any] = []
    node = body
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
        elif missing and i == len(loc) - 1:
            pass
        else:
            continue
        path.append(part)
    return path


def parse_chat_request(body: Any) -> ChatRequest:
    """``body`` (parsed JSON) as a :class:`ChatRequest`; raises :class:`SgflowError`
    (``request.invalid``, answered 400) naming the first invalid field."""
    if not isinstance(body, dict):
        raise SgflowError("request.invalid", "the body must be a JSON object", field="")
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_failure(exc, body) from None
