"""Errors the service answers with, and the one set of handlers that shapes every error body.

Every error has the same body; its five keys are always present (``null`` where they do not
apply), and a few errors add more (``errors`` on 422s, ``request_id`` on 500s)::

    {"error": {"code": "program.version_exists", "message": "…", "field": "/version",
               "limit": null, "hint": "bump `version` …"}}

``code`` is stable: clients branch on it. ``field`` is a JSON pointer into the request body
(``""`` is the whole body); a query, path or header parameter is named ``query:limit``,
``path:version``, ``header:idempotency-key``. ``limit`` is the limit that was exceeded.

Codes (status):

- ``request.invalid`` (422): the request does not match the endpoint's schema; ``errors``
  lists every invalid field
- ``request.malformed_json`` (400): the body is not JSON
- ``json.non_finite``, ``json.lone_surrogate``, ``json.duplicate_key``, ``limit.json_depth``
  (past ``max_json_depth``), ``limit.json_number`` (400): JSON that parses but is refused,
  with ``field`` the JSON pointer (:mod:`sgflow.jsonbounds`)
- ``limit.request_size`` (413): the body is larger than ``max_request_bytes``
- ``auth.missing``, ``auth.invalid`` (401, with ``WWW-Authenticate: Bearer``)
- ``route.not_found`` (404), ``route.method_not_allowed`` (405)
- ``program.*``, ``step.*``, ``grammar.*``, ``limit.*``… (422): the static checker's codes
  for an invalid program; ``errors`` lists every problem with its ``line``
- ``program.not_found`` (404), ``program.version_exists``, ``program.version_deleted`` (409),
  ``program.deleted`` (410)
- ``internal`` (500): a bug; logged with its traceback, the client gets the request id only

The OpenAI-compatible paths (:data:`OPENAI_PATHS`) answer the same errors in OpenAI's shape
(:func:`sgflow.openai.openai_error`: ``message``, ``type``, ``param``, ``code``, with
sgflow's code as ``sgflow_code``), whoever raises them: a route, a dependency (the API
key), the body middleware or the catch-all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sgflow import traces
from sgflow.errors import SgflowError
from sgflow.jsonbounds import JsonBoundsError
from sgflow.openai.errors import openai_error

__all__ = [
    "OPENAI_PATHS",
    "ApiError",
    "error_response",
    "install_error_handlers",
    "internal_error",
    "invalid_request",
    "json_refused",
    "loc_to_field",
    "malformed_json",
    "request_too_large",
    "request_too_slow",
    "speaks_openai",
]

log = logging.getLogger("sgflow.service")


class ApiError(SgflowError):
    """An error the client caused or must act on; the handlers turn it into its body.

    A :class:`sgflow.errors.SgflowError` raised by a route: ``code`` must be registered,
    ``status`` must be the one the registry gives it (``ValueError`` otherwise: one code, one
    status, whoever answers it). Optional: ``field`` (JSON pointer), ``limit``, ``hint``,
    ``headers`` (added to the response), ``extra`` (more keys for the error object).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        limit: Any = None,
        hint: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            code, message, field=field, limit=limit, hint=hint, headers=headers, extra=extra
        )
        if status != self.status:
            raise ValueError(f"{code} is answered with {self.status}, not {status}")


OPENAI_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/models", "/v1/files")
"""Paths (and everything under them) whose errors are in OpenAI's shape."""


def speaks_openai(path: str | None) -> bool:
    """Whether errors on ``path`` are answered in OpenAI's shape."""
    return path is not None and any(path == p or path.startswith(p + "/") for p in OPENAI_PATHS)


def error_response(err: SgflowError, *, path: str | None = None) -> JSONResponse:
    """The response for ``err``: its status, body and headers; in OpenAI's shape when
    ``path`` (the request's) is one of :data:`OPENAI_PATHS`. The code is noted on the
    request's span."""
    traces.note(code=err.code)
    if speaks_openai(path):
        answer = openai_error(err)
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)
    return JSONResponse(err.to_body(), status_code=err.status, headers=err.headers or None)


def request_too_large(limit: int) -> ApiError:
    """The 413 for a body over ``limit`` bytes (``limit.request_size``)."""
    return ApiError(
        413,
        "limit.request_size",
        f"the request body is larger than {limit} bytes",
        limit=limit,
        hint="send less per request; use a batch (JSONL upload) for many inputs",
    )


def request_too_slow(timeout_s: float) -> ApiError:
    """The 408 for a body that did not arrive within ``timeout_s`` (``request.timeout``)."""
    return ApiError(
        408,
        "request.timeout",
        f"the request body did not arrive within {timeout_s:g} s",
        limit=timeout_s,
        hint="send the body at once; upload large batches from a fast link",
    )


def internal_error(request_id: str | None, exc: BaseException, *, dev_mode: bool) -> ApiError:
    """The 500 for an unexpected exception: the request id, and in development the
    exception's type and message. Never a traceback."""
    message = "internal error; report the request id"
    if dev_mode:
        message = f"{message} ({type(exc).__name__}: {exc})"
    return ApiError(500, "internal", message, extra={"request_id": request_id})


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def loc_to_field(loc: Sequence[Any]) -> str:
    """A pydantic error location as our ``field``: ``("body", "a", 0)`` → ``/a/0``,
    ``("query", "limit")`` → ``query:limit``."""
    if not loc:
        return ""
    where, rest = str(loc[0]), [str(p) for p in loc[1:]]
    if where == "body":
        return "".join(f"/{_escape(p)}" for p in rest)
    return f"{where}:{'/'.join(rest)}" if rest else where


def _path(request: Request) -> str:
    """The request's path for :func:`error_response`; a route that speaks OpenAI on a
    shared path (an OpenAI batch on ``/v1/batches``) sets ``request.state.openai_errors``."""
    if getattr(request.state, "openai_errors", False):
        return OPENAI_PATHS[0]
    return request.url.path


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SgflowError)
    return error_response(exc, path=_path(request))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        reason = (bad_json.get("ctx") or {}).get("error", "JSON decode error")
        return error_response(
            malformed_json(f"{reason} at character {bad_json['loc'][-1]}"), path=request.url.path
        )
    return error_response(invalid_request(errors), path=_path(request))


def invalid_request(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """The 422 ``request.invalid`` for pydantic errors whose ``loc`` starts with where the
    value came from (``("body", "schema")``, ``("query", "limit")``): every field in
    ``errors``, the first as ``field``."""
    items = [
        {
            "code": "request.invalid",
            "field": loc_to_field(e.get("loc", ())),
            "message": e.get("msg", "invalid"),
        }
        for e in errors
    ]
    first = items[0] if items else {"field": "", "message": "invalid request"}
    summary = "; ".join(f"{i['field'] or '(body)'}: {i['message']}" for i in items[:5])
    return ApiError(
        422,
        "request.invalid",
        f"{len(items)} invalid field(s): {summary}",
        field=first["field"],
        hint="see /docs for the request schema",
        extra={"errors": items},
    )


def malformed_json(detail: str) -> ApiError:
    """The 400 for a body that is not JSON (``request.malformed_json``)."""
    return ApiError(
        400,
        "request.malformed_json",
        f"the body is not valid JSON: {detail}",
        field="",
        hint="send a JSON document with Content-Type: application/json",
    )


def json_refused(exc: JsonBoundsError, *, field: str = "", where: str = "") -> SgflowError:
    """The 4xx for JSON the bounded loader refused, in the body or in a part of it at
    ``field`` (a JSONL line: ``/inputs/3``); ``where`` prefixes the message (``line 4: ``).
    The loader's code, with its registered status, the JSON pointer and the limit."""
    if exc.code == "request.malformed_json":
        return malformed_json(where + exc.message)
    return SgflowError(
        exc.code,
        f"the JSON is refused: {where}{exc.message}",
        field=field + (exc.pointer or ""),
        limit=exc.limit,
        hint=exc.hint,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    err: SgflowError
    if exc.status_code == 404:
        err = ApiError(
            404,
            "route.not_found",
            f"no route {request.method} {request.url.path}",
            hint="see /docs for the API",
            headers=headers,
        )
    elif exc.status_code == 405:
        err = ApiError(
            405,
            "route.method_not_allowed",
            f"{request.method} is not allowed on {request.url.path}",
            hint="see /docs for the methods of this path",
            headers=headers,
        )
    else:  # an HTTPException raised inside FastAPI/Starlette (e.g. a body it could not read)
        code = "request.malformed_json" if exc.status_code == 400 else "request.invalid"
        err = SgflowError(code, str(exc.detail), headers=headers)
        err.status = exc.status_code
    return error_response(err, path=request.url.path)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # reached only when RequestContextMiddleware is not installed (it catches these first)
    request_id = getattr(request.state, "request_id", None)
    log.exception("unhandled error", exc_info=exc, extra={"request_id": request_id})
    dev_mode = bool(getattr(getattr(request.app.state, "settings", None), "dev_mode", False))
    return error_response(internal_error(request_id, exc, dev_mode=dev_mode), path=request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers for :class:`ApiError`, request validation (422
    ``request.invalid`` with every field, or 400 ``request.malformed_json``), routing and
    other HTTP errors, and unexpected exceptions (500 ``internal``). Oversized bodies are
    refused by :class:`sgflow.service.middleware.BodySizeLimitMiddleware` with
    :func:`request_too_large`."""
    app.add_exception_handler(SgflowError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
