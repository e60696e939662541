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
  - TimeLimitExceeded         ``run.time_limit``: not raised by the store; the error recorded on
                              a run whose attempt outlived ``SGFLOW_CELERY_HARD_TIME_LIMIT_S``
                              (the worker's watchdog stops it before the broker redelivers)
  - InvalidCursor             ``run.invalid_cursor``: a ``list_runs`` cursor the store did not
                              issue; the service answers 422 naming ``field``
  - ActiveRunLimit            ``limit.concurrent_runs``: the tenant already has ``limit`` runs
                              queued or running (batch lines aside); nothing was created; the
                              service answers 429 with ``Retry-After``
  - IdempotencyConflict       ``idempotency.conflict``: the Idempotency-Key was used with
                              another request body; the service answers 409

Every one is a :class:`sgflow.errors.SgflowError`; ``to_dict()`` gives the body stored in a
run's ``error`` and sent to clients.
"""

from __future__ import annotations

from typing import Any

from sgflow.errors import CODES as _REGISTRY
from sgflow.errors import SgflowError

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
    "TimeLimitExceeded",
]

CODES: dict[str, str] = {
    name: _REGISTRY[name].summary
    for name in (
        "run.not_found",
        "run.lease_lost",
        "run.already_finished",
        "run.max_attempts",
        "run.invalid_cursor",
        "run.time_limit",
        "limit.concurrent_runs",
        "idempotency.conflict",
    )
}
"""The codes a :class:`StoreError` carries (a view of :data:`sgflow.errors.CODES`)."""


class StoreError(SgflowError):
    """Base class; ``code`` (a class attribute) is one of :data:`CODES`."""

    code: str = "run.store"
    hint: str | None = None

    def __init__(self, message: str, *, run_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(type(self).code, message, hint=type(self).hint, **kwargs)
        self.run_id = run_id


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
            limit=limit,
        )


class TimeLimitExceeded(StoreError):
    code = "run.time_limit"
    hint = (
        "a step generates for too long: lower its max_tokens, split the program, or raise "
        "SGFLOW_CELERY_HARD_TIME_LIMIT_S (and the visibility timeout above it)"
    )

    def __init__(self, run_id: str, limit_s: float) -> None:
        super().__init__(
            f"run {run_id!r} ran past the hard time limit of {limit_s:g}s and was stopped",
            run_id=run_id,
            limit=limit_s,
        )
        self.limit_s = limit_s


class InvalidCursor(StoreError):
    code = "run.invalid_cursor"

    def __init__(self, cursor: str) -> None:
        super().__init__(
            f"{cursor[:40]!r} is not a cursor this service issued", field="query:cursor"
        )


class ActiveRunLimit(StoreError):
    code = "limit.concurrent_runs"
    hint = "wait for runs to finish, or use POST /v1/batches for bulk work"

    def __init__(self, tenant: str, limit: int, active: int) -> None:
        super().__init__(
            f"the tenant has {active} queued or running runs; the limit is {limit}",
            limit=limit,
            headers={"Retry-After": "5"},
        )
        self.tenant = tenant
        self.active = active


class IdempotencyConflict(StoreError):
    code = "idempotency.conflict"
    hint = "use a new key for a new request"

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was used with a different request body",
            field="header:Idempotency-Key",
        )
