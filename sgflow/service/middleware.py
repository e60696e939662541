"""ASGI middleware: request ids and access logs, unexpected errors, the body-size limit.

Both are plain ASGI (no ``BaseHTTPMiddleware``), so streaming responses pass untouched.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sgflow.service.errors import error_response, internal_error, request_too_large

__all__ = ["BodySizeLimitMiddleware", "RequestContextMiddleware"]

access_log = logging.getLogger("sgflow.service.access")
log = logging.getLogger("sgflow.service")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Gives every request an id (the client's ``X-Request-ID`` when it is sane, else a new
    one; echoed in the response), writes one JSON access-log line per request (method, path,
    status, duration, tenant), and turns an exception that escaped every handler into a 500
    ``internal`` body: the traceback goes to the log, the client gets the request id.
    ``dev_mode`` (default False) adds the exception's type and message to that body."""

    def __init__(self, app: ASGIApp, *, dev_mode: bool = False) -> None:
        self.app = app
        self.dev_mode = dev_mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        begin = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not started:
                err = internal_error(request_id, exc, dev_mode=self.dev_mode)
                await error_response(err)(scope, receive, send_with_id)
        finally:
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - begin) * 1000, 2),
                    "tenant": state.get("tenant"),
                },
            )


class _TooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413 ``limit.request_size``.

    A ``Content-Length`` over the limit is answered before the app runs. A chunked body is
    counted as it is read; past the limit, reading raises inside the app and whatever the app
    makes of that (FastAPI turns a failed body read into a 400) is replaced by the 413.
    ``path_limits`` (path → bytes) replaces ``max_bytes`` for those exact paths (the batch
    upload's larger limit)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, path_limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = {p.rstrip("/"): n for p, n in (path_limits or {}).items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(str(scope.get("path", "")).rstrip("/"), self.max_bytes)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await error_response(request_too_large(limit))(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to the failed read; the 413 replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await error_response(request_too_large(limit))(scope, receive, send)
