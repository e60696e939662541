"""Errors the engine reports to its clients.

Hierarchy (catch by meaning):

- EngineError                 every refusal or failure the engine answers with a body
  - BadRequest                the request is wrong; 400, the engine keeps serving
    - ConstraintError         a regex / JSON Schema / EBNF that cannot be compiled
    - ContextOverflow         prompt plus max_new_tokens do not fit the context
  - Overloaded                too many queued requests; 503, retryable
  - Aborted                   the request was cancelled or the engine shut down

Bodies follow SGLang's shape, ``{"error": {"message": ...}}``, with sgflow's ``code``
and ``field`` (a dotted path into the request) added so a client can act on them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Aborted",
    "BadRequest",
    "ConstraintError",
    "ContextOverflow",
    "EngineError",
    "Overloaded",
]


class EngineError(Exception):
    """Base class; ``status`` is the HTTP status, ``code`` a stable identifier."""

    status: int = 500
    code: str = "engine.internal"
    retryable: bool = False

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.field is not None:
            error["field"] = self.field
        if self.retryable:
            error["retryable"] = True
        return {"error": error}


class BadRequest(EngineError):
    status = 400
    code = "request.invalid"


class ConstraintError(BadRequest):
    code = "grammar.invalid"


class ContextOverflow(BadRequest):
    code = "limit.context"


class Overloaded(EngineError):
    status = 503
    code = "engine.overloaded"
    retryable = True


class Aborted(EngineError):
    status = 499
    code = "request.aborted"
