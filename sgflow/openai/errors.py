"""sgflow's errors in OpenAI's shape: the one translation at the OpenAI boundary.

Every refusal on the OpenAI-compatible surface is a :class:`sgflow.errors.SgflowError` with a
registered code; :func:`openai_error` renders it as OpenAI renders its own::

    {"error": {"message": "…", "type": "invalid_request_error", "param": "messages[2].content",
               "code": "invalid_json_schema",
               "sgflow_code": "openai.invalid_json_schema", "field": "/response_format/…",
               "limit": null, "hint": "…", "retryable": false}}

- ``type`` comes from the status: 400/409/410/413/422 ``invalid_request_error``, 401
  ``authentication_error``, 403 ``permission_error``, 404 ``not_found_error``, 429
  ``rate_limit_error``, 5xx ``server_error``.
- The status is the registry's, except 422, which OpenAI never answers: it becomes 400, so the
  SDK raises ``BadRequestError`` as it does against OpenAI.
- ``code`` is OpenAI's name for the same failure where OpenAI has one (:data:`OPENAI_CODES`,
  or an error's ``openai_code`` extra), else sgflow's code; ``sgflow_code`` is always sgflow's.
- ``param`` is OpenAI's dotted/bracket path (``tools[0].function.parameters``): an error's
  ``param`` extra, else its ``field`` pointer rewritten (:func:`pointer_to_param`).
- Headers: the error's own (``Retry-After``), plus ``x-should-retry: false`` when the error is
  not retryable: the SDK retries 408/409/429/5xx twice by default and sends no idempotency
  key, so a final failure must say so or the client submits the run again.

After a streamed 200, errors are SSE events instead: :func:`chat_stream_error` (the chat
SDK raises ``APIError`` from ``data: {"error": …}``) and :func:`responses_stream_error`
(Responses' ``{"type": "error", …}`` event).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sgflow.errors import SgflowError

__all__ = [
    "OPENAI_CODES",
    "OpenAIErrorAnswer",
    "chat_stream_error",
    "openai_error",
    "pointer_to_param",
    "responses_stream_error",
]

OPENAI_CODES: dict[str, str] = {
    "openai.invalid_json_schema": "invalid_json_schema",
    "openai.unsupported": "unsupported_parameter",
    "auth.missing": "missing_api_key",
    "auth.invalid": "invalid_api_key",
    "model.not_found": "model_not_found",
    "program.not_found": "model_not_found",
    "limit.concurrent_runs": "rate_limit_exceeded",
    "limit.context": "context_length_exceeded",
    "request.malformed_json": "invalid_json",
}
"""sgflow code → the ``code`` OpenAI uses for the same failure (others keep sgflow's)."""

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
# sgflow's keys that travel beside OpenAI's four (extra keys of the error are kept too)
_SGFLOW_KEYS = ("field", "limit", "hint", "retryable")
_INDEX = re.compile(r"^(0|[1-9][0-9]*)$")


@dataclass(frozen=True)
class OpenAIErrorAnswer:
    """What to answer: ``status``, the JSON ``body`` and the ``headers``."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def pointer_to_param(pointer: str | None) -> str | None:
    """An sgflow ``field`` in OpenAI's ``param`` form: ``/tools/0/function/parameters`` →
    ``tools[0].function.parameters``; ``query:after`` → ``after``; ``""``/None → None."""
    if not pointer:
        return None
    if not pointer.startswith("/"):
        return pointer.split(":", 1)[-1]
    out = ""
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if _INDEX.match(token) and out:
            out += f"[{token}]"
        else:
            out += f".{token}" if out else token
    return out


def error_type(status: int) -> str:
    """OpenAI's ``type`` for an HTTP status."""
    if status >= 500:
        return "server_error"
    return _TYPES.get(status, "invalid_request_error")


def _object(err: SgflowError, status: int) -> dict[str, Any]:
    extra = dict(err.extra)
    param = extra.pop("param", None)
    code = extra.pop("openai_code", None) or OPENAI_CODES.get(err.code, err.code)
    body: dict[str, Any] = {
        "message": err.message,
        "type": error_type(status),
        "param": param if param is not None else pointer_to_param(err.field),
        "code": code,
        "sgflow_code": err.code,
    }
    for key in _SGFLOW_KEYS:
        body[key] = getattr(err, key)
    for key, value in extra.items():
        body.setdefault(key, value)
    return body


def openai_status(err: SgflowError) -> int:
    """The status the OpenAI surface answers ``err`` with (422 → 400; others unchanged)."""
    return 400 if err.status == 422 else err.status


def openai_error(err: SgflowError) -> OpenAIErrorAnswer:
    """``err`` as OpenAI's error answer (see the module docstring)."""
    status = openai_status(err)
    headers = {str(k): str(v) for k, v in err.headers.items()}
    if not err.retryable:
        headers["x-should-retry"] = "false"
    return OpenAIErrorAnswer(status, {"error": _object(err, status)}, headers)


def chat_stream_error(err: SgflowError) -> dict[str, Any]:
    """The payload of the SSE event that ends a chat stream with ``err`` after the 200:
    ``{"error": {...}}``, which the SDK raises as ``openai.APIError``."""
    return {"error": _object(err, openai_status(err))}


def responses_stream_error(err: SgflowError, *, sequence_number: int) -> dict[str, Any]:
    """The Responses ``error`` event for ``err`` (``type``, ``code``, ``message``, ``param``,
    ``sequence_number``), with sgflow's keys beside them."""
    obj = _object(err, openai_status(err))
    return {
        "type": "error",
        "code": obj["code"],
        "message": obj["message"],
        "param": obj["param"],
        "sequence_number": sequence_number,
        "sgflow_code": obj["sgflow_code"],
        **{k: obj[k] for k in _SGFLOW_KEYS},
    }
