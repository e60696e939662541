"""ASGI middleware: request ids and access logs, unexpected errors, the body-size limit.

Both are plain ASGI (no ``BaseHTTPMiddleware``), so streaming responses pass untouched.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sgflow.errors import SgflowError
from sgflow.service.errors import (
    error_response,
    internal_error,
    request_too_large,
    request_too_slow,
)

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


class _Refused(Exception):
    """Reading the body stopped: too large, or too slow."""


class BodySizeLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413 ``limit.request_size``, and bodies
    not received within ``timeout_s`` (default 120) with 408 ``request.timeout``.

    A ``Content-Length`` over the limit is answered before the app runs. A chunked body is
    counted as it is read; past the limit, reading raises inside the app and whatever the app
    makes of that (FastAPI turns a failed body read into a 400) is replaced by the 413. The
    time limit runs from the first read of the body to its last chunk (a client trickling a
    body byte by byte is answered when it runs out, not kept forever); once the body is in,
    reads that wait for a disconnect (Server-Sent Events) are not limited. ``path_limits``
    (path → bytes) replaces ``max_bytes`` for those exact paths (the batch upload's larger
    limit)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        path_limits: dict[str, int] | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = {p.rstrip("/"): n for p, n in (path_limits or {}).items()}
        self.timeout_s = timeout_s

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
        refusal: SgflowError | None = None
        started = False
        body_done = False
        deadline: float | None = None

        async def limited_receive() -> Message:
            nonlocal received, refusal, body_done, deadline
            if body_done:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                refusal = request_too_slow(self.timeout_s)
                raise _Refused from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    refusal = request_too_large(limit)
                    raise _Refused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refusal is not None:
                return  # the app's answer to the failed read; the refusal replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if refusal is None:
                raise
        if refusal is not None and not started:
            await error_response(refusal)(scope, receive, send)
