"""The store on a sync ``redis.Redis``: what the workers, the CLI and tests use.

Each method runs one operation of :mod:`sgflow.store.runs`, :mod:`~sgflow.store.batches`,
:mod:`~sgflow.store.apikeys`, :mod:`~sgflow.store.programs`, … with a
:class:`~sgflow.store.ops.SyncRunner`; :mod:`sgflow.store.aio` has the same calls as
coroutines for the API. The operations' docstrings say what each does and raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import redis

from sgflow.store import (
    apikeys,
    batches,
    events,
    idempotency,
    listing,
    presence,
    programs,
    reaper,
    runs,
    stats,
)
from sgflow.store.apikeys import ApiKey
from sgflow.store.config import StoreConfig
from sgflow.store.events import Event
from sgflow.store.ops import SyncRunner
from sgflow.store.programs import ProgramInfo, PutOutcome, StoredProgram
from sgflow.store.records import BatchProgress, BatchRecord, Claim, FinalStatus, Run
from sgflow.store.runs import Submitted

__all__ = ["BatchStore", "KeyStore", "ProgramBodies", "ProgramStore", "RunStore", "Stats"]


class Stats:
    """The ``/metrics`` counters of one deployment (``prefix`` default ``sgflow:``)."""

    def __init__(self, redis_client: redis.Redis, *, prefix: str = "sgflow:") -> None:
        self.redis = redis_client
        self.keys = StoreConfig(prefix=prefix).keys
        self._run = SyncRunner(redis_client)

    def run_submitted(self, n: int = 1) -> None:
        self._run(stats.run_submitted(self.keys, n))

    def run_finished(self, status: str) -> None:
        self._run(stats.run_finished(self.keys, status))

    def step_finished(self, latency_s: float | None, usage: Mapping[str, Any]) -> None:
        self._run(stats.step_finished(self.keys, latency_s, usage))

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        return self._run(stats.read(self.keys))

    def latency_histogram(self) -> tuple[list[tuple[str, float]], float]:
        return self._run(stats.latency_histogram(self.keys))

    def snapshot(self) -> stats.MetricsSnapshot:
        return self._run(stats.snapshot(self.keys))


class RunStore:
    """Runs, checkpoints, events and batch counters in one Redis (a sync client, with or
    without ``decode_responses``). The keyword arguments are :class:`StoreConfig`'s
    (``prefix`` default ``sgflow:``, ``lease_s`` 30, ``max_attempts`` 3, ``result_ttl_s``
    7 days, ``events_maxlen`` 10000, ``clock`` ``time.time``); raises ``ValueError`` for a
    setting out of range."""

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        prefix: str = "sgflow:",
        lease_s: float = 30,
        max_attempts: int = 3,
        result_ttl_s: int = 7 * 24 * 3600,
        events_maxlen: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = StoreConfig(
            prefix=prefix,
            lease_s=float(lease_s),
            max_attempts=max_attempts,
            result_ttl_s=int(result_ttl_s),
            events_maxlen=events_maxlen,
            clock=clock,
        )
        self.redis = redis_client
        self.keys = self.config.keys
        self.stats = Stats(redis_client, prefix=prefix)
        self._run = SyncRunner(redis_client)

    @property
    def lease_s(self) -> float:
        return self.config.lease_s

    @property
    def max_attempts(self) -> int:
        return self.config.max_attempts

    @property
    def result_ttl_s(self) -> int:
        return self.config.result_ttl_s

    def clock(self) -> float:
        return self.config.clock()

    # -- lifecycle (see sgflow.store.runs) ---------------------------------------------------------

    def create(
        self,
        *,
        run_id: str,
        tenant: str,
        program: str,
        program_hash: str,
        inputs: dict[str, Any],
        parent: str | None = None,
        priority: int = 0,
        deadline_at: float | None = None,
    ) -> Run:
        return self._run(
            runs.create(
                self.config,
                run_id=run_id,
                tenant=tenant,
                program=program,
                program_hash=program_hash,
                inputs=inputs,
                parent=parent,
                priority=priority,
                deadline_at=deadline_at,
            )
        )

    def submit(
        self,
        *,
        run_id: str,
        tenant: str,
        program: str,
        program_hash: str,
        inputs: dict[str, Any],
        priority: int = 0,
        deadline_at: float | None = None,
        max_active: int | None = None,
        idempotency_key: str | None = None,
        digest: str = "",
    ) -> Submitted:
        return self._run(
            runs.submit(
                self.config,
                run_id=run_id,
                tenant=tenant,
                program=program,
                program_hash=program_hash,
                inputs=inputs,
                priority=priority,
                deadline_at=deadline_at,
                max_active=max_active,
                idempotency_key=idempotency_key,
                digest=digest,
            )
        )

    def active_runs(self, tenant: str) -> int:
        return self._run(runs.active_runs(self.config, tenant))

    def create_many(self, items: Iterable[dict[str, Any]]) -> int:
        return self._run(runs.create_many(self.config, items))

    def claim(self, run_id: str, worker: str) -> Claim | None:
        return self._run(runs.claim(self.config, run_id, worker))

    def heartbeat(self, claim: Claim) -> bool:
        return self._run(runs.heartbeat(self.config, claim))

    def finish(
        self,
        claim: Claim,
        *,
        status: FinalStatus,
        output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        return self._run(runs.finish(self.config, claim, status=status, output=output, error=error))

    def request_cancel(self, run_id: str) -> str:
        return self._run(runs.request_cancel(self.config, run_id))

    def is_cancel_requested(self, run_id: str) -> bool:
        return self._run(runs.is_cancel_requested(self.config, run_id))

    # -- checkpoints and events ----------------------------------------------------------------

    def checkpoint(self, claim: Claim, step_id: str, data: dict[str, Any]) -> bool:
        return self._run(runs.checkpoint(self.config, claim, step_id, data))

    def checkpoints(self, run_id: str) -> dict[str, dict[str, Any]]:
        return self._run(runs.checkpoints(self.config, run_id))

    def append_event(self, target: Claim | str, kind: str, data: dict[str, Any]) -> str:
        return self._run(runs.append_event(self.config, target, kind, data))

    def read_events(
        self,
        run_id: str,
        after_id: str = "0-0",
        block_ms: int | None = None,
        count: int = 100,
    ) -> list[Event]:
        return self._run(events.read_events(self.config, run_id, after_id, block_ms, count))

    # -- reading ---------------------------------------------------------------------------------

    def get(self, run_id: str, *, tenant: str | None = None) -> Run | None:
        return self._run(runs.get(self.config, run_id, tenant=tenant))

    def list_runs(
        self,
        tenant: str,
        *,
        status: str | None = None,
        program: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Run], str | None]:
        """A tenant's runs, newest first; see :func:`sgflow.store.listing.list_runs`."""
        return self._run(
            listing.list_runs(
                self.keys, tenant, status=status, program=program, cursor=cursor, limit=limit
            )
        )

    # -- the reaper ------------------------------------------------------------------------------

    def expired_leases(self, now: float | None = None) -> list[str]:
        return self._run(reaper.expired_leases(self.config, now))

    def stale_queued(self, older_than_s: float, now: float | None = None) -> list[str]:
        return self._run(reaper.stale_queued(self.config, older_than_s, now))

    def reap(self, now: float | None = None) -> list[tuple[str, str]]:
        return self._run(reaper.reap(self.config, now))

    def expire_deadlines(self, now: float | None = None) -> list[tuple[str, str]]:
        return self._run(reaper.expire_deadlines(self.config, now))

    # -- batch lines -----------------------------------------------------------------------------

    def mark_batch_line(self, batch_id: str, run_id: str, status: str) -> bool:
        return self._run(runs.mark_batch_line(self.config, batch_id, run_id, status))

    def batch_progress(self, batch_id: str) -> BatchProgress:
        return self._run(runs.batch_progress(self.config, batch_id))

    # -- idempotency keys and workers ------------------------------------------------------------

    def idempotent_run(self, tenant: str, key: str) -> tuple[str, str] | None:
        return self._run(idempotency.lookup(self.keys, tenant, key))

    def announce_worker(self, worker_id: str, *, ttl_s: float) -> None:
        self._run(presence.announce(self.keys, worker_id, ttl_s=ttl_s, now=self.clock()))

    def withdraw_worker(self, worker_id: str) -> None:
        self._run(presence.withdraw(self.keys, worker_id))

    def alive_workers(self, *, limit: int = 20) -> list[str]:
        return self._run(presence.alive_workers(self.keys, limit=limit))


class BatchStore:
    """Batch records, their lines and indexes, in ``runs``' Redis under its prefix (see
    :mod:`sgflow.store.batches`)."""

    def __init__(self, runs_: RunStore) -> None:
        self.runs = runs_
        self.redis = runs_.redis
        self.config = runs_.config
        self.prefix = runs_.keys.prefix
        self.open_key = runs_.keys.batches_open
        self.deadlines_key = runs_.keys.batches_deadlines
        self._run = SyncRunner(runs_.redis)

    def key(self, batch_id: str) -> str:
        return self.config.keys.batch(batch_id)

    def runs_key(self, batch_id: str) -> str:
        return self.config.keys.batch_runs(batch_id)

    def tenant_key(self, tenant: str) -> str:
        return self.config.keys.tenant_batches(tenant)

    def create(
        self,
        *,
        batch_id: str,
        tenant: str,
        program: str,
        program_hash: str,
        total: int,
        deadline_at: float | None,
    ) -> BatchRecord:
        return self._run(
            batches.create(
                self.config,
                batch_id=batch_id,
                tenant=tenant,
                program=program,
                program_hash=program_hash,
                total=total,
                deadline_at=deadline_at,
            )
        )

    def add_lines(
        self,
        record: BatchRecord,
        lines: Sequence[tuple[str, str, dict[str, Any]]],
        *,
        priority: int = 0,
    ) -> None:
        self._run(batches.add_lines(self.config, record, lines, priority=priority))

    def start(self, batch_id: str) -> None:
        self._run(batches.start(self.config, batch_id))

    def update(self, batch_id: str, **fields: str) -> None:
        self._run(batches.update(self.config, batch_id, **fields))

    def lines(self, batch_id: str, start: int, stop: int) -> list[tuple[str, str]]:
        return self._run(batches.lines(self.config, batch_id, start, stop))

    def pages(self, batch_id: str) -> Iterator[list[tuple[str, str]]]:
        """Every line, :data:`~sgflow.store.batches.CHUNK` at a time."""
        number = 0
        while page := self._run(batches.page_of_lines(self.config, batch_id, number)):
            yield page
            number += 1

    def get(self, batch_id: str, *, tenant: str | None = None) -> BatchRecord | None:
        return self._run(batches.get(self.config, batch_id, tenant=tenant))

    def progress(self, batch_id: str) -> BatchProgress:
        return self._run(runs.batch_progress(self.config, batch_id))

    def finalize(self, batch_id: str) -> str | None:
        return self._run(batches.finalize(self.config, batch_id))

    def expire(self, record: BatchRecord) -> bool:
        return self._run(batches.expire(self.config, record))

    def fail(self, batch_id: str, error: dict[str, Any], *, total: int) -> None:
        self._run(batches.fail(self.config, batch_id, error, total=total))

    def cancel(self, record: BatchRecord) -> None:
        self._run(batches.cancel(self.config, record))

    def cancel_unfinished(self, batch_id: str, *, mark: str | None = None) -> None:
        self._run(batches.cancel_unfinished(self.config, batch_id, mark=mark))

    def is_cancelled(self, batch_id: str) -> bool:
        return self._run(batches.is_cancelled(self.config, batch_id))

    def result_page(
        self, batch_id: str, page: list[tuple[str, str]]
    ) -> list[tuple[str, str, str | None, str | None, str | None]]:
        return self._run(batches.result_page(self.config, batch_id, page))

    def refresh(self, record: BatchRecord) -> tuple[BatchRecord, BatchProgress]:
        return self._run(batches.refresh(self.config, record))

    def after_line(self, run_id: str) -> str | None:
        return self._run(batches.after_line(self.config, run_id))

    def sweep(self, *, limit: int = 1000) -> list[tuple[str, str]]:
        return self._run(batches.sweep(self.config, limit=limit))

    def queued_lines(self, batch_id: str) -> Iterator[list[str]]:
        """The run ids of the lines still ``queued``, a page at a time, in input order
        (pages with none are skipped)."""
        number = 0
        while (page := self._run(batches.queued_lines(self.config, batch_id, number))) is not None:
            if page:
                yield page
            number += 1

    # last: a method named `list` shadows the builtin in the annotations after it
    def list(
        self, tenant: str, *, limit: int = 20, after: str | None = None
    ) -> tuple[list[BatchRecord], bool] | None:
        return self._run(batches.list_batches(self.config, tenant, limit=limit, after=after))


class KeyStore:
    """API keys of every tenant in one Redis (sync client, with or without
    ``decode_responses``); ``prefix`` (default ``sgflow:``) starts every key. See
    :mod:`sgflow.store.apikeys`."""

    def __init__(self, redis_client: redis.Redis, *, prefix: str = "sgflow:") -> None:
        self.redis = redis_client
        self.prefix = prefix
        self.keys = StoreConfig(prefix=prefix).keys
        self._run = SyncRunner(redis_client)

    def create_key(self, tenant: str, *, name: str | None = None) -> tuple[str, str]:
        return self._run(apikeys.create_key(self.keys, tenant, name=name))

    def get_key(self, key_id: str) -> ApiKey | None:
        return self._run(apikeys.get_key(self.keys, key_id))

    def verify_key(self, secret: str) -> ApiKey | None:
        return self._run(apikeys.verify_key(self.keys, secret))

    def revoke_key(self, key_id: str) -> ApiKey | None:
        return self._run(apikeys.revoke_key(self.keys, key_id))

    def list_keys(self, tenant: str) -> list[ApiKey]:
        return self._run(apikeys.list_keys(self.keys, tenant))

    def tenants(self) -> list[str]:
        return self._run(apikeys.tenants(self.keys))


class ProgramStore:
    """Programs of every tenant as immutable ``name@version`` (sync client); ``prefix``
    (default ``sgflow:``) starts every key. See :mod:`sgflow.store.programs`."""

    def __init__(self, redis_client: redis.Redis, *, prefix: str = "sgflow:") -> None:
        self.redis = redis_client
        self.prefix = prefix
        self.keys = StoreConfig(prefix=prefix).keys
        self._run = SyncRunner(redis_client)

    def put(
        self, tenant: str, program: dict[str, Any], *, source: str | None = None
    ) -> tuple[StoredProgram, PutOutcome]:
        return self._run(programs.put(self.keys, tenant, program, source=source))

    def get(self, tenant: str, name: str, version: int) -> StoredProgram | None:
        return self._run(programs.get(self.keys, tenant, name, version))

    def latest(self, tenant: str, name: str) -> StoredProgram | None:
        return self._run(programs.latest(self.keys, tenant, name))

    def versions(self, tenant: str, name: str) -> list[ProgramInfo]:
        return self._run(programs.versions(self.keys, tenant, name))

    def list_latest(
        self, tenant: str, *, limit: int = 100, after: str | None = None
    ) -> tuple[list[ProgramInfo], str | None]:
        return self._run(programs.list_latest(self.keys, tenant, limit=limit, after=after))

    def delete(self, tenant: str, name: str, version: int) -> StoredProgram | None:
        return self._run(programs.delete(self.keys, tenant, name, version))


class ProgramBodies:
    """Program bodies by content hash: the service writes, workers read (write-once)."""

    def __init__(self, client: redis.Redis, *, prefix: str = "sgflow:") -> None:
        self.redis = client
        self.prefix = prefix
        self.keys = StoreConfig(prefix=prefix).keys
        self._run = SyncRunner(client)

    def put(self, program_hash: str, body: dict[str, Any]) -> None:
        self._run(programs.put_body(self.keys, program_hash, body))

    def get(self, program_hash: str) -> dict[str, Any] | None:
        return self._run(programs.get_body(self.keys, program_hash))
