"""Errors the engine reports to its clients.

Hierarchy (catch by meaning):

- EngineError                 every refusal or failure the engine answers with a body
  - BadRequest                the request is wrong (``request.invalid``); the engine keeps serving
    - ConstraintError         a regex / JSON Schema / EBNF that cannot be compiled (``grammar.*``)
    - ContextOverflow         prompt plus max_new_tokens do not fit the context
  - Overloaded                too many queued requests; 503, retryable
  - Aborted                   the request was cancelled or the engine shut down

Each is a :class:`sgflow.errors.SgflowError`: codes and statuses come from the one registry,
so a refusal reads the same from the engine as from the checker or the API. Bodies keep
SGLang's shape, ``{"error": {"message": ...}}``, with sgflow's ``code``, ``field`` (a JSON
pointer into the request, e.g. ``/sampling_params/regex``), ``limit``, ``hint`` and
``retryable`` beside it.
"""

from __future__ import annotations

from typing import Any

from sgflow.errors import SgflowError

__all__ = [
    "Aborted",
    "BadRequest",
    "ConstraintError",
    "ContextOverflow",
    "EngineError",
    "Overloaded",
]


class EngineError(SgflowError):
    """Base class; ``code`` (default: the class's) is a registered code, which gives the
    HTTP ``status``. ``field`` may be given dotted (``sampling_params.regex``): it is
    answered as a JSON pointer."""

    code: str = "engine.internal"

    def __init__(
        self, message: str, *, field: str | None = None, code: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(code or type(self).code, message, field=field, **kwargs)


class BadRequest(EngineError):
    code = "request.invalid"


class ConstraintError(BadRequest):
    code = "grammar.invalid_schema"


class ContextOverflow(BadRequest):
    code = "limit.context"


class Overloaded(EngineError):
    code = "engine.overloaded"


class Aborted(EngineError):
    code = "request.aborted"
