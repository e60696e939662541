"""Programs as models: ``model: "program:ticket-triage@1"`` runs that stored program.

The last user message is the program's input: a JSON object is its inputs; any other text
is the value of the program's one required string input (or, when nothing is required, of
its only string input); otherwise the request is refused with 400 ``input.invalid`` naming
the inputs the program needs. Earlier messages, ``instructions`` and the sampling
parameters are not used: the program has its own prompts and settings. The answer's
content is the program's validated output (JSON text, or the output itself when it is a
string), and the run id is in the answer as for any model.

Tools, ``n`` > 1 and the Responses API's function-call items are refused
(``openai.unsupported``). A ``json_schema`` response format cannot constrain a finished
program's output, so it is checked against it after the run: the SDK's ``parse`` gets a
valid object or an ``output.invalid`` error, never an object that does not match.

Resolving ``name@version`` needs the program store (I/O): the route resolves it
(``service.deps.resolve_program_ref(…, field="/model")``) and passes the program's inputs
schema here.
"""

from __future__ import annotations

import json
from typing import Any

from sgflow.errors import SgflowError
from sgflow.grammars.validation import validation_errors
from sgflow.openai.chat_request import ChatRequest, JsonSchemaFormat, UserMessage
from sgflow.openai.chat_translate import message_text
from sgflow.openai.model_list import ProgramModel
from sgflow.openai.plan import Plan
from sgflow.openai.responses_request import JsonSchemaText, ResponsesRequest
from sgflow.openai.responses_translate import item_text, responses_echo
from sgflow.openai.translate import unsupported

__all__ = ["plan_program_model", "program_inputs"]


def _string_input(schema: dict[str, Any]) -> str | None:
    props = schema.get("properties")
    if not isinstance(props, dict):
        return None
    strings = [
        str(k) for k, v in props.items() if isinstance(v, dict) and v.get("type") == "string"
    ]
    required = [str(k) for k in schema.get("required") or [] if k in props]
    if len(required) == 1:
        return required[0] if required[0] in strings else None
    if not required and len(strings) == 1:
        return strings[0]
    return None


def program_inputs(
    inputs_schema: dict[str, Any], message: str, *, ref: str, field: str
) -> dict[str, Any]:
    """The inputs a program gets from a user message (see the module docstring); raises
    :class:`SgflowError` ``input.invalid`` naming what the program needs."""
    text = message.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            problems = validation_errors(value, inputs_schema)
            if problems:
                first = problems[0]
                raise SgflowError(
                    "input.invalid",
                    f"the inputs of {ref} in the last user message: {first['pointer']}: "
                    f"{first['message']}",
                    field=field,
                    extra={"errors": problems},
                )
            return value
    name = _string_input(inputs_schema)
    if name is None:
        needed = inputs_schema.get("required") or sorted(inputs_schema.get("properties") or {})
        raise SgflowError(
            "input.invalid",
            f"{ref} takes the inputs {', '.join(map(str, needed)) or '(none declared)'}: send "
            "them as a JSON object in the last user message",
            field=field,
            hint='e.g. {"' + '": …, "'.join(map(str, needed)) + '": …}' if needed else None,
        )
    return {name: message}


def _last_user_text(req: ChatRequest | ResponsesRequest) -> tuple[str, str]:
    if isinstance(req, ChatRequest):
        for i in range(len(req.messages) - 1, -1, -1):
            msg = req.messages[i]
            if isinstance(msg, UserMessage):
                return message_text(msg.content, f"/messages/{i}/content"), f"/messages/{i}/content"
        raise SgflowError(
            "request.invalid", "no user message to run the program with", field="/messages"
        )
    if isinstance(req.input, str):
        return req.input, "/input"
    for i in range(len(req.input) - 1, -1, -1):
        item = req.input[i]
        if item.role == "user" and (item.type or "message") == "message":
            return item_text(item.content, f"/input/{i}/content"), f"/input/{i}/content"
    raise SgflowError("request.invalid", "no user message to run the program with", field="/input")


def plan_program_model(
    req: ChatRequest | ResponsesRequest,
    model: ProgramModel,
    *,
    inputs_schema: dict[str, Any],
) -> Plan:
    """The plan that runs the stored program ``model`` (resolved by the caller, who gives
    its ``inputs_schema``) with the request's last user message."""
    if req.tools:
        raise unsupported("tools with a program model", "/tools")
    if isinstance(req, ChatRequest) and (req.n or 1) > 1:
        raise unsupported("n > 1 with a program model", "/n")
    text, field = _last_user_text(req)
    inputs = program_inputs(inputs_schema, text, ref=model.ref, field=field)
    schema: dict[str, Any] | None = None
    if isinstance(req, ChatRequest) and isinstance(req.response_format, JsonSchemaFormat):
        schema = req.response_format.json_schema.schema_
    elif (
        isinstance(req, ResponsesRequest)
        and req.text
        and isinstance(req.text.format, JsonSchemaText)
    ):
        schema = req.text.format.schema_
    stream_options = getattr(req, "stream_options", None)
    include_usage = bool(req.stream) and (
        isinstance(req, ResponsesRequest) or bool(stream_options and stream_options.include_usage)
    )
    return Plan(
        endpoint="chat" if isinstance(req, ChatRequest) else "responses",
        model=req.model,
        program=model.ref,
        inputs=inputs,
        mode="program",
        stream=bool(req.stream),
        include_usage=include_usage,
        live=False,
        output_schema=schema,
        echo=responses_echo(req) if isinstance(req, ResponsesRequest) else {},
    )
