"""The store on a ``redis.asyncio.Redis``: what the API uses, so that no request holds a
thread while Redis answers.

The same operations as :mod:`sgflow.store.sync`, driven by an
:class:`~sgflow.store.ops.AsyncRunner` (each method is a coroutine; the operations'
docstrings say what each does and raises). Only what the API does is here: claiming,
heartbeats, checkpoints and the reaper are the workers'. A client belongs to the event loop
that first uses it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import redis.asyncio

from sgflow.store import (
    apikeys,
    batches,
    events,
    files,
    idempotency,
    listing,
    presence,
    programs,
    runs,
    stats,
)
from sgflow.store.apikeys import ApiKey
from sgflow.store.config import StoreConfig
from sgflow.store.events import Event
from sgflow.store.files import OpenAIBatchFacts, StoredFile
from sgflow.store.ops import AsyncRunner
from sgflow.store.programs import ProgramInfo, PutOutcome, StoredProgram
from sgflow.store.records import BatchProgress, BatchRecord, Run
from sgflow.store.runs import Submitted

__all__ = [
    "AsyncBatchStore",
    "AsyncFileStore",
    "AsyncKeyStore",
    "AsyncProgramBodies",
    "AsyncProgramStore",
    "AsyncRunStore",
]


class AsyncRunStore:
    """Runs as the API sees them: submit, read, list, cancel, follow; plus the ``/metrics``
    numbers, idempotency keys and live workers. The keyword arguments are
    :class:`StoreConfig`'s (``prefix`` default ``sgflow:``, ``result_ttl_s`` 7 days, …)."""

    def __init__(
        self,
        redis_client: redis.asyncio.Redis,
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
        self._run = AsyncRunner(redis_client)

    def clock(self) -> float:
        return self.config.clock()

    def on(self, redis_client: redis.asyncio.Redis) -> AsyncRunStore:
        """The same store over another client (e.g. a connection kept for blocking reads)."""
        other = AsyncRunStore.__new__(AsyncRunStore)
        other.config, other.redis, other.keys = self.config, redis_client, self.keys
        other._run = AsyncRunner(redis_client)
        return other

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def submit(
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
        traceparent: str | None = None,
    ) -> Submitted:
        return await self._run(
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
                traceparent=traceparent,
            )
        )

    async def get(self, run_id: str, *, tenant: str | None = None) -> Run | None:
        return await self._run(runs.get(self.config, run_id, tenant=tenant))

    async def request_cancel(self, run_id: str) -> str:
        return await self._run(runs.request_cancel(self.config, run_id))

    async def read_events(
        self, run_id: str, after_id: str = "0-0", count: int = 100
    ) -> list[Event]:
        """Events after ``after_id`` (never blocks: waiting is the event hub's job)."""
        return await self._run(events.read_events(self.config, run_id, after_id, None, count))

    async def wait_events(
        self,
        cursors: Mapping[str, str],
        *,
        hub: str,
        hub_cursor: str,
        block_ms: int,
        count: int = 100,
    ) -> tuple[dict[str, list[Event]], str]:
        return await self._run(
            events.wait_events(
                self.config, cursors, hub=hub, hub_cursor=hub_cursor, block_ms=block_ms, count=count
            )
        )

    async def nudge(self, hub: str) -> None:
        await self._run(events.nudge(self.config, hub))

    async def list_runs(
        self,
        tenant: str,
        *,
        status: str | None = None,
        program: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Run], str | None]:
        return await self._run(
            listing.list_runs(
                self.keys, tenant, status=status, program=program, cursor=cursor, limit=limit
            )
        )

    async def active_runs(self, tenant: str) -> int:
        return await self._run(runs.active_runs(self.config, tenant))

    async def idempotent_run(self, tenant: str, key: str) -> tuple[str, str] | None:
        return await self._run(idempotency.lookup(self.keys, tenant, key))

    async def run_submitted(self, n: int = 1) -> None:
        await self._run(stats.run_submitted(self.keys, n))

    async def metrics(self) -> stats.MetricsSnapshot:
        return await self._run(stats.snapshot(self.keys))

    async def alive_workers(self, *, limit: int = 20) -> list[str]:
        return await self._run(presence.alive_workers(self.keys, limit=limit))


class AsyncBatchStore:
    """Batches as the API sees them (see :mod:`sgflow.store.batches`), in ``runs``' Redis."""

    def __init__(self, runs_: AsyncRunStore) -> None:
        self.runs = runs_
        self.config = runs_.config
        self._run = AsyncRunner(runs_.redis)

    async def create(
        self,
        *,
        batch_id: str,
        tenant: str,
        program: str,
        program_hash: str,
        total: int,
        deadline_at: float | None,
        traceparent: str | None = None,
    ) -> BatchRecord:
        return await self._run(
            batches.create(
                self.config,
                batch_id=batch_id,
                tenant=tenant,
                program=program,
                program_hash=program_hash,
                total=total,
                deadline_at=deadline_at,
                traceparent=traceparent,
            )
        )

    async def add_lines(
        self,
        record: BatchRecord,
        lines: Sequence[tuple[str, str, dict[str, Any]]],
        *,
        priority: int = 0,
        programs: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        await self._run(
            batches.add_lines(self.config, record, lines, priority=priority, programs=programs)
        )

    async def start(self, batch_id: str) -> None:
        await self._run(batches.start(self.config, batch_id))

    async def is_cancelled(self, batch_id: str) -> bool:
        return await self._run(batches.is_cancelled(self.config, batch_id))

    async def cancel_unfinished(self, batch_id: str) -> None:
        await self._run(batches.cancel_unfinished(self.config, batch_id))

    async def fail(self, batch_id: str, error: dict[str, Any], *, total: int) -> None:
        await self._run(batches.fail(self.config, batch_id, error, total=total))

    async def get(self, batch_id: str, *, tenant: str | None = None) -> BatchRecord | None:
        return await self._run(batches.get(self.config, batch_id, tenant=tenant))

    async def progress(self, batch_id: str) -> BatchProgress:
        return await self._run(runs.batch_progress(self.config, batch_id))

    async def refresh(self, record: BatchRecord) -> tuple[BatchRecord, BatchProgress]:
        return await self._run(batches.refresh(self.config, record))

    async def cancel(self, record: BatchRecord) -> None:
        await self._run(batches.cancel(self.config, record))

    async def pages(self, batch_id: str) -> AsyncIterator[list[tuple[str, str]]]:
        """Every line, :data:`~sgflow.store.batches.CHUNK` at a time."""
        number = 0
        while page := await self._run(batches.page_of_lines(self.config, batch_id, number)):
            yield page
            number += 1

    async def result_page(
        self, batch_id: str, page: list[tuple[str, str]]
    ) -> list[tuple[str, str, str | None, str | None, str | None]]:
        return await self._run(batches.result_page(self.config, batch_id, page))

    async def list_batches(
        self, tenant: str, *, limit: int = 20, after: str | None = None
    ) -> tuple[list[BatchRecord], bool] | None:
        return await self._run(batches.list_batches(self.config, tenant, limit=limit, after=after))


class AsyncKeyStore:
    """API keys, for authenticating requests (see :mod:`sgflow.store.apikeys`)."""

    def __init__(self, redis_client: redis.asyncio.Redis, *, prefix: str = "sgflow:") -> None:
        self.keys = StoreConfig(prefix=prefix).keys
        self._run = AsyncRunner(redis_client)

    async def verify_key(self, secret: str) -> ApiKey | None:
        return await self._run(apikeys.verify_key(self.keys, secret))

    async def get_key(self, key_id: str) -> ApiKey | None:
        return await self._run(apikeys.get_key(self.keys, key_id))


class AsyncProgramStore:
    """Programs as immutable ``name@version`` (see :mod:`sgflow.store.programs`)."""

    def __init__(self, redis_client: redis.asyncio.Redis, *, prefix: str = "sgflow:") -> None:
        self.keys = StoreConfig(prefix=prefix).keys
        self._run = AsyncRunner(redis_client)

    async def put(
        self, tenant: str, program: dict[str, Any], *, source: str | None = None
    ) -> tuple[StoredProgram, PutOutcome]:
        return await self._run(programs.put(self.keys, tenant, program, source=source))

    async def get(self, tenant: str, name: str, version: int) -> StoredProgram | None:
        return await self._run(programs.get(self.keys, tenant, name, version))

    async def latest(self, tenant: str, name: str) -> StoredProgram | None:
        return await self._run(programs.latest(self.keys, tenant, name))

    async def versions(self, tenant: str, name: str) -> list[ProgramInfo]:
        return await self._run(programs.versions(self.keys, tenant, name))

    async def list_latest(
        self, tenant: str, *, limit: int = 100, after: str | None = None
    ) -> tuple[list[ProgramInfo], str | None]:
        return await self._run(programs.list_latest(self.keys, tenant, limit=limit, after=after))

    async def delete(self, tenant: str, name: str, version: int) -> StoredProgram | None:
        return await self._run(programs.delete(self.keys, tenant, name, version))


class AsyncProgramBodies:
    """Program bodies by content hash (write-once); the API puts, workers read."""

    def __init__(self, redis_client: redis.asyncio.Redis, *, prefix: str = "sgflow:") -> None:
        self.keys = StoreConfig(prefix=prefix).keys
        self._run = AsyncRunner(redis_client)

    async def put(self, program_hash: str, body: dict[str, Any]) -> None:
        await self._run(programs.put_body(self.keys, program_hash, body))


class AsyncFileStore:
    """OpenAI files of each tenant, and the OpenAI side of batches (see
    :mod:`sgflow.store.files`)."""

    def __init__(self, redis_client: redis.asyncio.Redis, *, prefix: str = "sgflow:") -> None:
        self.keys = StoreConfig(prefix=prefix).keys
        self._run = AsyncRunner(redis_client)

    async def put(
        self, tenant: str, stored: StoredFile, content: str, *, ttl_s: int | None = None
    ) -> None:
        await self._run(files.put_file(self.keys, tenant, stored, content, ttl_s=ttl_s))

    async def get(self, tenant: str, file_id: str) -> StoredFile | None:
        return await self._run(files.get_file(self.keys, tenant, file_id))

    async def content(self, tenant: str, file_id: str) -> str | None:
        return await self._run(files.file_content(self.keys, tenant, file_id))

    async def delete(self, tenant: str, file_id: str) -> bool:
        return await self._run(files.delete_file(self.keys, tenant, file_id))

    async def list(
        self,
        tenant: str,
        *,
        limit: int,
        newest_first: bool = True,
        after: str | None = None,
        purpose: str | None = None,
    ) -> tuple[list[StoredFile], bool] | None:
        return await self._run(
            files.list_files(
                self.keys,
                tenant,
                limit=limit,
                newest_first=newest_first,
                after=after,
                purpose=purpose,
            )
        )

    async def put_batch_facts(self, batch_id: str, **fields: Any) -> None:
        await self._run(files.put_batch_facts(self.keys, batch_id, **fields))

    async def batch_facts(self, batch_id: str) -> OpenAIBatchFacts | None:
        return await self._run(files.batch_facts(self.keys, batch_id))

    async def batch_input(self, batch_id: str) -> str | None:
        return await self._run(files.batch_input(self.keys, batch_id))

    async def take_results(self, batch_id: str, *, hold_s: int) -> bool:
        return await self._run(files.take_results(self.keys, batch_id, hold_s=hold_s))

    async def release_results(self, batch_id: str) -> None:
        await self._run(files.release_results(self.keys, batch_id))

    async def set_results(self, batch_id: str, **fields: Any) -> None:
        await self._run(files.set_results(self.keys, batch_id, **fields))
