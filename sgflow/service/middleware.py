"""ASGI middleware: request spans, request ids and access logs, unexpected errors, the
body-size limit, bounded JSON bodies.

All are plain ASGI (no ``BaseHTTPMiddleware``), so streaming responses pass untouched.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import anyio.to_thread
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sgflow import traces
from sgflow.errors import SgflowError
from sgflow.jsonbounds import JsonBoundsError, loads
from sgflow.service.errors import (
    error_response,
    internal_error,
    json_refused,
    malformed_json,
    request_too_large,
    request_too_slow,
)

__all__ = [
    "JSON_BODY",
    "NDJSON_TYPES",
    "UNTRACED_PATHS",
    "BodySizeLimitMiddleware",
    "JsonBodyMiddleware",
    "RequestContextMiddleware",
    "TracingMiddleware",
]

JSON_BODY = "sgflow.json_body"  # scope["state"] key: (value, text) of the parsed body
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")

access_log = logging.getLogger("sgflow.service.access")
log = logging.getLogger("sgflow.service")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


# probes and scrapes, every few seconds: spans of them would bury the requests in a trace view
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class TracingMiddleware:
    """One SERVER span per HTTP request, named ``METHOD /route/{template}`` (a path's ids
    are not in its name), continuing the caller's W3C ``traceparent`` when it sends one. It
    is current while the request is handled, so runs submitted by the request join its
    trace (:mod:`sgflow.traces`) and log lines carry its ids. The answer's status is an
    attribute (5xx marks the span failed), as is the error code of an error answer; a
    ``traceparent`` header in the answer names the span. Health probes and metric scrapes
    (:data:`UNTRACED_PATHS`) and the playground's page and assets make no span: they would
    bury the requests in a trace view."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in UNTRACED_PATHS or path.startswith("/playground"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        parent = traces.context_of(headers.get("traceparent"))
        method = scope["method"]
        with traces.span(
            method,
            kind=traces.SpanKind.SERVER,
            parent=parent,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:
            status = 500

            async def send_traced(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    header = traces.traceparent()
                    if header:
                        MutableHeaders(scope=message).append("traceparent", header)
                await send(message)

            try:
                await self.app(scope, receive, send_traced)
            finally:
                route = _route_template(scope)
                if route:
                    span.update_name(f"{method} {route}")
                traces.set_attributes(
                    span, {"http.route": route, "http.response.status_code": status}
                )
                if status >= 500:
                    traces.fail(span, {"message": f"HTTP {status}"})


def _route_template(scope: Scope) -> str | None:
    """The matched route's path with its parameters named (``/v1/runs/{run_id}``), from the
    path and its parameters (a nested router's route knows only its own part); None when no
    route matched."""
    if scope.get("route") is None:
        return None
    template = str(scope["path"])
    for name, value in (scope.get("path_params") or {}).items():
        spelled = str(value)
        at = template.rfind(spelled) if spelled else -1
        if at >= 0:
            template = f"{template[:at]}{{{name}}}{template[at + len(spelled) :]}"
    return template


class RequestContextMiddleware:
    """Gives every request an id (the client's ``X-Request-ID`` when it is sane, else a new
    one; echoed in the response, unless the route answered an ``X-Request-ID`` of its
    own: the OpenAI routes answer the run id, which the SDK shows as ``_request_id``),
    writes one JSON access-log line per request (method, path, status, duration, tenant),
    and turns an exception that escaped every handler into a 500
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
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:  # the OpenAI routes answer the run id
                    headers.append("X-Request-ID", request_id)
            await send(message)

        begin = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not started:
                err = internal_error(request_id, exc, dev_mode=self.dev_mode)
                await error_response(err, path=scope["path"])(scope, receive, send_with_id)
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
            await error_response(request_too_large(limit), path=scope["path"])(scope, receive, send)
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
            await error_response(refusal, path=scope["path"])(scope, receive, send)


class JsonBodyMiddleware:
    """Parses every request body that is meant as JSON once, with
    :func:`sgflow.jsonbounds.loads` (``max_depth``, integer digits, NaN, lone surrogates,
    duplicate keys), before any route or FastAPI's own body parsing sees it: a refused body
    is answered here (400 ``request.malformed_json``, ``json.*`` or ``limit.json_depth``),
    and a route's ``json.loads`` only ever meets a bounded document. The value is kept in
    ``scope["state"][JSON_BODY]`` for :func:`sgflow.service.deps.read_json_body`.

    Every non-empty ``POST``/``PUT``/``PATCH`` body counts, whatever its ``Content-Type``
    (the API reads bodies as JSON whatever it says), except JSONL uploads
    (:data:`NDJSON_TYPES`), whose lines are bounded one by one, and ``multipart/form-data``
    (``POST /v1/files``: a file is stored, never parsed here). A body over ``offload_bytes``
    (default 256 KiB) is parsed in a worker thread, not on the event loop. Sizes are the
    job of :class:`BodySizeLimitMiddleware`, which must wrap this one."""

    def __init__(self, app: ASGIApp, *, max_depth: int, offload_bytes: int = 256 << 10) -> None:
        self.app = app
        self.max_depth = max_depth
        self.offload_bytes = offload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        content_type = Headers(scope=scope).get("content-type", "")
        if content_type.split(";")[0].strip().lower() in (*NDJSON_TYPES, "multipart/form-data"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        message: Message = {"type": "http.request", "more_body": True}
        while message.get("more_body", False):
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
        body = b"".join(chunks)
        if message["type"] != "http.request":  # the client left: the app reads that too
            body = b""
        elif body:
            try:
                parsed = await self._parse(body)
            except JsonBoundsError as exc:
                await error_response(json_refused(exc), path=scope["path"])(scope, receive, send)
                return
            except UnicodeDecodeError as exc:
                refused = malformed_json(f"not UTF-8 (byte {exc.start})")
                await error_response(refused, path=scope["path"])(scope, receive, send)
                return
            scope.setdefault("state", {})[JSON_BODY] = parsed
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            if message["type"] != "http.request":
                return message
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _parse(self, body: bytes) -> tuple[Any, str]:
        def parse() -> tuple[Any, str]:
            text = body.decode("utf-8")
            return loads(text, max_depth=self.max_depth, max_size=None), text

        if len(body) > self.offload_bytes:
            return await anyio.to_thread.run_sync(parse)
        return parse()
