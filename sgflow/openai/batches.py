"""OpenAI's files and batches, as formats: the file object, the input file, result lines.

An OpenAI batch is a JSONL file uploaded with ``purpose: batch`` (``POST /v1/files``), one
request per line::

    {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {…}}

then ``POST /v1/batches`` with its ``input_file_id`` and ``endpoint``. Each line runs as one
run of the batch (the body planned like a direct request); results come back as two JSONL
files, matched to the input by ``custom_id`` (their order is not the input's):

- output file, a line per request answered 200:
  ``{"id": "batch_req_<run>", "custom_id", "response": {"status_code": 200, "request_id":
  <run>, "body": <ChatCompletion or Response>}, "error": null}``;
- error file, a line per request answered with an error (``response.body`` is the error in
  OpenAI's shape) or never run (``response: null``, ``error: {"code": "batch_expired" |
  "batch_cancelled", "message"}``).

:func:`parse_batch_file` checks the whole input before anything runs and reports every
broken line by number (1-based, as editors count), each with a code OpenAI uses where there
is one: ``invalid_json_line``, ``missing_custom_id``, ``duplicate_custom_id``,
``invalid_method``, ``invalid_url``, ``mismatched_endpoint``, ``invalid_body``,
``stream_not_supported``. Limits are OpenAI's (50,000 requests, 200 MB), configurable.

sgflow's own batch statuses already are OpenAI's (``validating`` … ``cancelled``);
:data:`BATCH_STATUS` maps them explicitly so a new sgflow status cannot leak unmapped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sgflow.errors import SgflowError

__all__ = [
    "BATCH_ENDPOINTS",
    "BATCH_STATUS",
    "BatchLimits",
    "BatchRequest",
    "batch_error_line",
    "batch_object",
    "batch_output_line",
    "file_object",
    "parse_batch_file",
]

BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/responses")
BATCH_STATUS: dict[str, str] = {
    "validating": "validating",
    "in_progress": "in_progress",
    "finalizing": "finalizing",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelling": "cancelling",
    "cancelled": "cancelled",
}
"""sgflow's batch status → OpenAI's ``Batch.status``."""

_MAX_CUSTOM_ID = 512
_MAX_REPORTED = 100  # line errors listed in one answer


@dataclass(frozen=True)
class BatchLimits:
    """Limits of an OpenAI batch input file (OpenAI's, by default)."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024


@dataclass(frozen=True)
class BatchRequest:
    """One valid input line: its ``line`` number, ``custom_id``, and the parsed ``body``
    (whatever ``parse_body`` returned: a request model)."""

    line: int
    custom_id: str
    body: Any


def file_object(
    file_id: str,
    *,
    size: int,
    created_at: float,
    filename: str,
    purpose: str,
    expires_at: float | None = None,
    status: str = "processed",
) -> dict[str, Any]:
    """OpenAI's ``FileObject``: ``purpose`` ``batch`` for uploads, ``batch_output`` for
    result files; ``status`` ``processed`` once stored (what ``wait_for_processing`` waits
    for)."""
    body: dict[str, Any] = {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(created_at),
        "filename": filename,
        "purpose": purpose,
        "status": status,
    }
    if expires_at is not None:
        body["expires_at"] = int(expires_at)
    return body


def _line_error(line: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"line": line, "code": code, "message": f"line {line}: {message}", "param": param}


def parse_batch_file(
    content: bytes,
    *,
    endpoint: str,
    parse_body: Callable[[Any], Any],
    limits: BatchLimits | None = None,
) -> list[BatchRequest]:
    """Every request of a batch input file, checked whole. ``parse_body`` parses one line's
    body for ``endpoint`` (e.g. ``parse_chat_request``; it raises
    :class:`SgflowError`). Blank lines are skipped.

    Raises :class:`SgflowError`: ``limit.file_size`` (413) over ``max_bytes``,
    ``limit.batch_size`` (413) over ``max_requests``, ``batch.invalid_line`` (answered 400)
    with every broken line in ``errors`` (``{"line", "code", "message", "param"}``, the
    first 100) and the first one's number in ``field`` (``/lines/<n>``).
    """
    limits = limits or BatchLimits()
    if endpoint not in BATCH_ENDPOINTS:
        raise SgflowError(
            "openai.unsupported",
            f"batches of {endpoint!r} are not supported; use one of {', '.join(BATCH_ENDPOINTS)}",
            field="/endpoint",
        )
    if len(content) > limits.max_bytes:
        raise SgflowError(
            "limit.file_size",
            f"the batch file has {len(content)} bytes; the limit is {limits.max_bytes}",
            limit=limits.max_bytes,
            hint="split the requests into several batches",
        )
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise SgflowError(
            "batch.invalid_line",
            f"line {line}: the file is not UTF-8",
            field=f"/lines/{line}",
            extra={"errors": [_line_error(line, "invalid_json_line", "not UTF-8")]},
        ) from None
    requests: list[BatchRequest] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(requests) + len(errors) >= limits.max_requests:
            raise SgflowError(
                "limit.batch_size",
                f"the batch file has more than {limits.max_requests} requests",
                limit=limits.max_requests,
                hint="split the requests into several batches",
            )
        request = _line(number, raw, endpoint, parse_body, seen, errors)
        if request is not None:
            requests.append(request)
    if errors:
        first = errors[0]
        raise SgflowError(
            "batch.invalid_line",
            first["message"] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
            field=f"/lines/{first['line']}",
            extra={"errors": errors[:_MAX_REPORTED], "openai_code": first["code"]},
        )
    if not requests:
        raise SgflowError("batch.invalid_line", "the batch file has no requests", field="/lines")
    return requests


def _line(
    number: int,
    raw: str,
    endpoint: str,
    parse_body: Callable[[Any], Any],
    seen: dict[str, int],
    errors: list[dict[str, Any]],
) -> BatchRequest | None:
    try:
        item = json.loads(raw)
    except ValueError as exc:
        errors.append(_line_error(number, "invalid_json_line", f"not valid JSON ({exc})"))
        return None
    if not isinstance(item, dict):
        errors.append(_line_error(number, "invalid_json_line", "a line must be a JSON object"))
        return None
    custom_id = item.get("custom_id")
    problem: tuple[str, str, str | None] | None = None
    if not isinstance(custom_id, str) or not custom_id:
        problem = ("missing_custom_id", "`custom_id` must be a non-empty string", "custom_id")
    elif len(custom_id) > _MAX_CUSTOM_ID:
        problem = (
            "invalid_custom_id",
            f"`custom_id` is over {_MAX_CUSTOM_ID} characters",
            "custom_id",
        )
    elif custom_id in seen:
        problem = (
            "duplicate_custom_id",
            f"`custom_id` {custom_id!r} is already used on line {seen[custom_id]}",
            "custom_id",
        )
    elif item.get("method") != "POST":
        problem = ("invalid_method", '`method` must be "POST"', "method")
    elif item.get("url") not in BATCH_ENDPOINTS:
        problem = ("invalid_url", f"`url` must be one of {', '.join(BATCH_ENDPOINTS)}", "url")
    elif item["url"] != endpoint:
        problem = (
            "mismatched_endpoint",
            f"`url` is {item['url']!r} but the batch's endpoint is {endpoint!r}",
            "url",
        )
    elif not isinstance(item.get("body"), dict):
        problem = ("invalid_body", "`body` must be a JSON object", "body")
    elif item["body"].get("stream"):
        problem = ("stream_not_supported", "a batch request cannot stream", "body.stream")
    extra = sorted(set(item) - {"custom_id", "method", "url", "body"})
    if problem is None and extra:
        problem = ("invalid_request", f"unknown key `{extra[0]}`", extra[0])
    if problem is not None:
        errors.append(_line_error(number, *problem))
        return None
    assert isinstance(custom_id, str)
    seen[custom_id] = number
    try:
        body = parse_body(item["body"])
    except SgflowError as err:
        from sgflow.openai.errors import pointer_to_param

        param = err.extra.get("param") or pointer_to_param(err.field)
        errors.append(
            _line_error(
                number,
                "invalid_body",
                err.message,
                f"body.{param}" if param else "body",
            )
        )
        return None
    return BatchRequest(number, custom_id, body)


def batch_output_line(
    custom_id: str, run_id: str, *, status_code: int, body: dict[str, Any]
) -> dict[str, Any]:
    """A result line: the request's answer (``body``: a ``ChatCompletion``/``Response``
    with ``status_code`` 200, or OpenAI's error body with the error's status)."""
    return {
        "id": f"batch_req_{run_id}",
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": run_id, "body": body},
        "error": None,
    }


def batch_error_line(custom_id: str, run_id: str, *, code: str, message: str) -> dict[str, Any]:
    """A line for a request that never ran: ``code`` ``batch_expired`` (the completion
    window ended first) or ``batch_cancelled``."""
    return {
        "id": f"batch_req_{run_id}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }


def batch_object(
    view: dict[str, Any],
    *,
    endpoint: str,
    input_file_id: str,
    completion_window: str = "24h",
    output_file_id: str | None = None,
    error_file_id: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """OpenAI's ``Batch`` from sgflow's batch view (``service.batches.batch_view``: ``id``,
    ``status``, ``request_counts``, ``created_at`` and the ``*_at`` times, ``errors``), with
    the OpenAI-side facts the caller stores beside it."""
    status = BATCH_STATUS.get(str(view.get("status")))
    if status is None:
        raise ValueError(f"sgflow batch status {view.get('status')!r} has no OpenAI status")

    def t(key: str) -> int | None:
        value = view.get(key)
        return int(value) if value is not None else None

    errors = view.get("errors")
    return {
        "id": view["id"],
        "object": "batch",
        "endpoint": endpoint,
        "input_file_id": input_file_id,
        "completion_window": completion_window,
        "status": status,
        "output_file_id": output_file_id,
        "error_file_id": error_file_id,
        "created_at": int(view["created_at"]),
        "in_progress_at": t("in_progress_at"),
        "expires_at": t("expires_at"),
        "finalizing_at": t("finalizing_at"),
        "completed_at": t("completed_at"),
        "failed_at": t("failed_at"),
        "expired_at": t("expired_at"),
        "cancelling_at": t("cancelling_at"),
        "cancelled_at": t("cancelled_at"),
        "request_counts": dict(
            view.get("request_counts") or {"total": 0, "completed": 0, "failed": 0}
        ),
        "metadata": metadata,
        "errors": (
            {"object": "list", "data": errors if isinstance(errors, list) else [errors]}
            if errors
            else None
        ),
    }
