"""Workers: the durable run store in Redis (and, later, the Celery app and tasks).

- :class:`RunStore`: run records, atomic claims with a lease and an attempt counter, fenced
  checkpoints, events and results, cancellation, the reaper, batch counters;
- :class:`Run`, :class:`Claim`, :class:`BatchProgress`: what it returns;
- :class:`StoreError` and its subclasses, each with a stable ``code``.
"""

from sgflow.workers.errors import (
    CODES,
    InvalidCursor,
    LeaseLost,
    MaxAttemptsExceeded,
    RunAlreadyFinished,
    RunNotFound,
    StoreError,
    TimeLimitExceeded,
)
from sgflow.workers.records import STATUSES, BatchProgress, Claim, Run
from sgflow.workers.store import Event, RunStore

__all__ = [
    "CODES",
    "STATUSES",
    "BatchProgress",
    "Claim",
    "Event",
    "InvalidCursor",
    "LeaseLost",
    "MaxAttemptsExceeded",
    "Run",
    "RunAlreadyFinished",
    "RunNotFound",
    "RunStore",
    "StoreError",
    "TimeLimitExceeded",
]
