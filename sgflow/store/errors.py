"""Errors of the run store, and their stable codes.

Hierarchy (catch by meaning; branch on ``code``, never on the message):

- StoreError                  base: ``code``, ``message``, ``run_id``, ``hint``, ``retryable``
  - RunNotFound               ``run.not_found``: no record under this id (never created, or its
                              result TTL has passed); the service answers 404
  - LeaseLost                 ``run.lease_lost``: a fenced write by an attempt that no longer
                              holds the run (the reaper requeued it or a newer attempt claimed
                              it); the worker must stop at once and write nothing more
  - RunAlreadyFinished        ``run.already_finished``: a fenced write after the holder's own
                              ``finish``
  - MaxAttemptsExceeded       ``run.max_attempts``: not raised by the store; it is the error
                              recorded on a run that lost its lease ``max_attempts`` times
  - InvalidCursor             ``run.invalid_cursor``: a ``list_runs`` cursor the store did not
                              issue; the service answers 422 naming ``field``
  - ActiveRunLimit            ``limit.concurrent_runs``: the tenant already has ``limit`` runs
                              queued or running (batch lines aside); nothing was created; the
                              service answers 429 with ``Retry-After``
  - IdempotencyConflict       ``idempotency.conflict``: the Idempotency-Key was used with
                              another request body; the service answers 409

``to_dict()`` gives the body stored in a run's ``error`` and sent to clients:
``{"code", "message", "hint"?, "limit"?, "field"?}``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CODES",
    "ActiveRunLimit",
    "IdempotencyConflict",
    "InvalidCursor",
    "LeaseLost",
    "MaxAttemptsExceeded",
    "RunAlreadyFinished",
    "RunNotFound",
    "StoreError",
]

CODES: dict[str, str] = {
    "run.not_found": "no run with this id (never created, or its result has expired)",
    "run.lease_lost": "a write by an attempt that no longer holds the run",
    "run.already_finished": "a write to a run whose result is already written",
    "run.max_attempts": "the run lost its worker too many times and was given up",
    "run.invalid_cursor": "a pagination cursor the store did not issue",
    "limit.concurrent_runs": "the tenant has as many queued or running runs as it may",
    "idempotency.conflict": "an Idempotency-Key reused with another request body",
}


class StoreError(Exception):
    """Base class; ``code`` is one of :data:`CODES`."""

    code: str = "run.store"
    retryable: bool = False
    hint: str = ""

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class RunNotFound(StoreError):
    code = "run.not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}", run_id=run_id)


class LeaseLost(StoreError):
    code = "run.lease_lost"
    hint = "stop working on this run: another attempt owns it now"

    def __init__(self, run_id: str, attempt: int) -> None:
        super().__init__(
            f"attempt {attempt} of run {run_id!r} no longer holds its lease", run_id=run_id
        )
        self.attempt = attempt


class RunAlreadyFinished(StoreError):
    code = "run.already_finished"

    def __init__(self, run_id: str, attempt: int) -> None:
        super().__init__(
            f"run {run_id!r} is finished; attempt {attempt} can write nothing more",
            run_id=run_id,
        )
        self.attempt = attempt


class MaxAttemptsExceeded(StoreError):
    code = "run.max_attempts"
    hint = "the worker died or stalled on every attempt; look for a crash or a step that hangs"

    def __init__(self, run_id: str, limit: int) -> None:
        super().__init__(
            f"run {run_id!r} lost its worker on each of {limit} attempts and was given up",
            run_id=run_id,
        )
        self.limit = limit

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "limit": self.limit}


class InvalidCursor(StoreError):
    code = "run.invalid_cursor"
    field = "cursor"

    def __init__(self, cursor: str) -> None:
        super().__init__(f"{cursor[:40]!r} is not a cursor this service issued")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "field": self.field}


class ActiveRunLimit(StoreError):
    code = "limit.concurrent_runs"
    retryable = True
    hint = "wait for runs to finish, or use POST /v1/batches for bulk work"

    def __init__(self, tenant: str, limit: int, active: int) -> None:
        super().__init__(f"the tenant has {active} queued or running runs; the limit is {limit}")
        self.tenant = tenant
        self.limit = limit
        self.active = active

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "limit": self.limit}


class IdempotencyConflict(StoreError):
    code = "idempotency.conflict"
    hint = "use a new key for a new request"

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used with a different request body")
