"""``POST /v1/responses``: the request as pydantic models, lenient where the SDK needs it.

The same rules as :mod:`sgflow.openai.chat_request`: input items, content parts and tools
ignore keys they do not know (the SDK sends output items back as input with ``id``,
``status``, ``annotations``, ``logprobs``, ``phase``; ``responses.parse`` sends a tool's
``description: null``), the top level refuses them. Input items are one lenient model keyed
by ``type`` (and ``role`` for messages) so the translation can refuse an item type it does
not support by name (``input[3]``) instead of a union error listing thirty.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sgflow.errors import SgflowError
from sgflow.openai.chat_request import MAX_MESSAGES, MAX_TOOLS, NAME_PATTERN, validation_failure

__all__ = [
    "InputItem",
    "ResponsesRequest",
    "ResponsesTool",
    "TextConfig",
    "parse_responses_request",
]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class InputPart(_Lenient):
    """A content part: ``input_text``, ``output_text`` (an assistant message sent back) and
    ``refusal`` are supported; others (``input_image``, ``input_file``) are refused."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    refusal: str | None = None


class InputItem(_Lenient):
    """One input item: a message (``type`` ``message`` or absent, with ``role``), a
    ``function_call`` or a ``function_call_output``; other types are refused by name."""

    model_config = ConfigDict(extra="allow")

    type: str | None = None
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[InputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputPart] | None = None


class PlainText(_Lenient):
    type: Literal["text"]


class JsonObject(_Lenient):
    type: Literal["json_object"]


class JsonSchemaText(_Lenient):
    """``text.format`` of type ``json_schema``: flat, unlike chat's ``json_schema`` wrapper."""

    type: Literal["json_schema"]
    name: str = Field(pattern=NAME_PATTERN)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormatParam = Annotated[PlainText | JsonObject | JsonSchemaText, Field(discriminator="type")]


class TextConfig(_Lenient):
    format: TextFormatParam | None = None
    verbosity: str | None = None


class ResponsesTool(_Lenient):
    """A flat function tool (``{"type": "function", "name", "parameters", "strict"}``);
    hosted tools (``web_search``, ``file_search``…) are refused by the translation."""

    model_config = ConfigDict(extra="allow")

    type: str
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(_Lenient):
    type: Literal["function"]
    name: str


class AllowedTools(_Lenient):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]] = Field(min_length=1)


class ResponsesRequest(BaseModel):
    """The body of ``POST /v1/responses``. ``None`` means "not sent"."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str = Field(min_length=1, max_length=256)
    input: str | list[InputItem] = Field(max_length=MAX_MESSAGES)
    instructions: str | None = None
    text: TextConfig | None = None
    tools: list[ResponsesTool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | AllowedTools | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    max_tool_calls: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    # refused unless neutral
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    background: bool | None = None
    prompt: dict[str, Any] | None = None
    top_logprobs: int | None = None
    include: list[str] | None = None
    reasoning: dict[str, Any] | None = None
    # accepted, without effect on the answer
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    truncation: str | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None


def parse_responses_request(body: Any) -> ResponsesRequest:
    """``body`` (parsed JSON) as a :class:`ResponsesRequest`; raises :class:`SgflowError`
    (``request.invalid``, answered 400) naming the first invalid field."""
    if not isinstance(body, dict):
        raise SgflowError("request.invalid", "the body must be a JSON object", field="")
    try:
        return ResponsesRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_failure(exc, body) from None
