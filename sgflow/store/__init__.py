"""The store: every record sgflow keeps in Redis, behind one small public API.

Runs (records, atomic claims with a lease and an attempt counter, fenced checkpoints and
events, results written once, cancellation, deadlines, the reaper), batches (bulk creation,
expiry, finalization, the sweep), tenants' API keys, stored programs and program bodies,
idempotency keys, live workers, and the ``/metrics`` counters. The API and the workers use
it only through the names below; nothing else in sgflow writes a Redis key.

- Sync (workers, CLI): :class:`RunStore`, :class:`BatchStore`, :class:`KeyStore`,
  :class:`ProgramStore`, :class:`ProgramBodies`, :class:`Stats` over ``redis.Redis``.
- Async (the API): :class:`AsyncRunStore`, :class:`AsyncBatchStore`, :class:`AsyncKeyStore`, :class:`AsyncFileStore`,
  :class:`AsyncProgramStore`, :class:`AsyncProgramBodies` over ``redis.asyncio.Redis``.
- Records: :class:`Run`, :class:`Claim`, :class:`BatchRecord`, :class:`BatchProgress`,
  :class:`ApiKey`, :class:`ProgramInfo`, :class:`StoredProgram`, :data:`Event`,
  :class:`MetricsSnapshot`; :class:`StoreConfig` (prefix, lease, attempts, TTLs, clock).
- Errors: :class:`StoreError` and its subclasses, each with a stable ``code`` in
  :data:`CODES`.

Every operation is written once (``sgflow.store.runs``, ``.batches``, …, as generators over
:mod:`sgflow.store.ops`) and driven by a sync or an async runner; the key layout is in
:mod:`sgflow.store.records`, the Lua scripts in :mod:`sgflow.store.lua`.
"""

from sgflow.store.aio import (
    AsyncBatchStore,
    AsyncFileStore,
    AsyncKeyStore,
    AsyncProgramBodies,
    AsyncProgramStore,
    AsyncRunStore,
)
from sgflow.store.apikeys import TENANT_PATTERN, ApiKey
from sgflow.store.batches import STALE_VALIDATING_S, batch_status
from sgflow.store.config import StoreConfig
from sgflow.store.errors import (
    CODES,
    ActiveRunLimit,
    IdempotencyConflict,
    InvalidCursor,
    LeaseLost,
    MaxAttemptsExceeded,
    RunAlreadyFinished,
    RunNotFound,
    StoreError,
    TimeLimitExceeded,
)
from sgflow.store.events import Event, check_event_id
from sgflow.store.files import OpenAIBatchFacts, StoredFile
from sgflow.store.programs import ProgramInfo, StoredProgram, content_hash
from sgflow.store.records import (
    FINAL_STATUSES,
    STATUSES,
    BatchProgress,
    BatchRecord,
    Claim,
    Run,
)
from sgflow.store.runs import Submitted, deadline_error
from sgflow.store.stats import MetricsSnapshot
from sgflow.store.sync import BatchStore, KeyStore, ProgramBodies, ProgramStore, RunStore, Stats

__all__ = [
    "CODES",
    "FINAL_STATUSES",
    "STALE_VALIDATING_S",
    "STATUSES",
    "TENANT_PATTERN",
    "ActiveRunLimit",
    "ApiKey",
    "AsyncBatchStore",
    "AsyncFileStore",
    "AsyncKeyStore",
    "AsyncProgramBodies",
    "AsyncProgramStore",
    "AsyncRunStore",
    "BatchProgress",
    "BatchRecord",
    "BatchStore",
    "Claim",
    "Event",
    "IdempotencyConflict",
    "InvalidCursor",
    "KeyStore",
    "LeaseLost",
    "MaxAttemptsExceeded",
    "MetricsSnapshot",
    "OpenAIBatchFacts",
    "ProgramBodies",
    "ProgramInfo",
    "ProgramStore",
    "Run",
    "RunAlreadyFinished",
    "RunNotFound",
    "RunStore",
    "Stats",
    "StoreConfig",
    "StoreError",
    "StoredFile",
    "StoredProgram",
    "Submitted",
    "TimeLimitExceeded",
    "batch_status",
    "check_event_id",
    "content_hash",
    "deadline_error",
]
