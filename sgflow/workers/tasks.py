"""The Celery task (one per run) and the reaper, bound to an app built from the settings.

``celery -A sgflow.workers.tasks worker`` (what ``sgflow worker`` runs) imports this module,
which reads :class:`sgflow.settings.Settings` once (the same class and variables as the API):
importing it raises ``pydantic.ValidationError`` for an unsafe configuration, such as a hard
time limit at or above the visibility timeout, so the worker refuses to start. The settings it
uses: ``REDIS_URL``, ``SGFLOW_PREFIX``, ``SGFLOW_ENGINE_URLS`` / ``SGFLOW_ROUTER_URL`` (see
:mod:`sgflow.workers.engines`), ``SGFLOW_LEASE_S``, ``SGFLOW_MAX_ATTEMPTS``,
``SGFLOW_RESULT_TTL_S``, ``SGFLOW_STALE_QUEUED_S``, ``SGFLOW_CELERY_*`` and the grammar limits.
When the worker is ready it logs its effective configuration and any warning about it or its
Redis (no AOF, an evicting memory policy).

Batches (:mod:`sgflow.workers.batches`): ``sgflow.batch_start`` warms a batch program's
shared prefix on the engine, then sends one run message per queued line; after each run the
task finalizes its batch if that was the last line; the reaper loop also sweeps batches
(deadlines, finalization nobody asked for, creations the API never finished). Every record
is read and written through :mod:`sgflow.store`.
"""

from __future__ import annotations

import logging
import threading
from functools import cache
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown

from sgflow import traces
from sgflow.execution import endpoint_for
from sgflow.programs.compiler import compile_program, static_prefix
from sgflow.programs.model import Program
from sgflow.settings import Settings, apply, mask, redis_warnings
from sgflow.store import BatchRecord, BatchStore, ProgramBodies, RunStore
from sgflow.workers.batches import fan_out, warm_prefix
from sgflow.workers.celery_app import (
    DEFAULT_BROKER,
    TASK_RUN,
    TASK_START,
    celery_from,
    describe,
    worker_id,
)
from sgflow.workers.engines import EnginePool
from sgflow.workers.runner import Runner

__all__ = [
    "SETTINGS",
    "announce",
    "app",
    "batch_start_task",
    "enqueue",
    "reap_once",
    "run_task",
    "sweep_once",
]

log = logging.getLogger("sgflow.workers.tasks")

SETTINGS = apply(Settings())
traces.configure(SETTINGS, "sgflow-worker")
app = celery_from(SETTINGS)
engines = EnginePool(SETTINGS.worker_engine_urls, factory=endpoint_for)


@cache
def _runner() -> Runner:
    client = redis.Redis.from_url(SETTINGS.redis_url or DEFAULT_BROKER)
    prefix = SETTINGS.redis_prefix
    store = RunStore(
        client,
        prefix=prefix,
        lease_s=SETTINGS.lease_s,
        max_attempts=SETTINGS.max_attempts,
        result_ttl_s=SETTINGS.result_ttl_s,
    )
    return Runner(
        store,
        ProgramBodies(client, prefix=prefix),
        engines=engines,
        worker_id=worker_id(),
        time_limit_s=SETTINGS.celery_hard_time_limit_s,
    )


@app.task(name=TASK_RUN, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def run_task(run_id: str) -> str:
    outcome = _runner().run(run_id)
    log.info("run task done", extra={"run_id": run_id, "outcome": outcome})
    try:
        _batches().after_line(run_id)  # finalize the batch if this was its last line
    except Exception:
        log.exception("finalizing a batch failed", extra={"run_id": run_id})
    return outcome


@cache
def _batches() -> BatchStore:
    return BatchStore(_runner().store)


@app.task(name=TASK_START, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def batch_start_task(batch_id: str) -> int:
    """Warm the batch program's shared prefix once (best effort: a failure only loses the
    warm cache), then send a message for every line still queued; returns how many."""
    batches = _batches()
    record = batches.get(batch_id)
    if record is None:
        return 0
    with traces.span(
        "batch.start",
        kind=traces.SpanKind.CONSUMER,
        parent=traces.context_of(record.traceparent),
        attributes={"sgflow.batch.id": batch_id, "sgflow.batch.lines": record.total},
    ):
        return _start_batch(batches, record)


def _start_batch(batches: BatchStore, record: BatchRecord) -> int:
    batch_id = record.id
    prefix = None
    body = _runner().bodies.get(record.program_hash)
    try:
        prefix = static_prefix(compile_program(Program.model_validate(body))) if body else None
    except Exception:
        log.exception("no prefix to warm", extra={"batch_id": batch_id})
    if prefix is not None:
        for url in engines.urls:  # several engines and no router: lines spread over all
            warm_prefix(url, prefix)
    with app.producer_or_acquire() as producer:
        sent = fan_out(
            batches, batch_id, lambda run_id: run_task.apply_async(args=[run_id], producer=producer)
        )
    log.info("batch fanned out", extra={"batch_id": batch_id, "lines": sent})
    return sent


_reaper_stop = threading.Event()


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_reaper(**_: Any) -> None:
    """Every worker also reaps: the reap is atomic, so several reapers are harmless."""
    _log_configuration()

    def loop() -> None:
        interval = max(1.0, _runner().store.lease_s / 2)
        announce(interval)
        while not _reaper_stop.wait(interval):
            try:
                announce(interval)
                for run_id, outcome in reap_once():
                    log.warning("reaped run", extra={"run_id": run_id, "outcome": outcome})
            except Exception:
                log.exception("reaper pass failed")
            try:
                for batch_id, outcome in sweep_once():
                    log.info("swept batch", extra={"batch_id": batch_id, "outcome": outcome})
            except Exception:
                log.exception("batch sweep failed")

    threading.Thread(target=loop, name="sgflow-reaper", daemon=True).start()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_reaper(**_: Any) -> None:
    """Stop reaping and withdraw this worker's announcement, so /readyz stops counting it
    at once rather than when the key's TTL runs out."""
    _reaper_stop.set()
    traces.shutdown()
    try:
        _runner().store.withdraw_worker(worker_id())
    except redis.RedisError:
        log.warning("could not withdraw the worker's announcement")


def _log_configuration() -> None:
    """One line with what this worker runs with (Celery's own view of its delivery settings),
    then one warning per unwise setting or Redis property."""
    log.info(
        "worker configuration",
        extra={
            "worker": worker_id(),
            "celery": describe(app),
            "redis_url": mask(SETTINGS.redis_url),
            "prefix": SETTINGS.redis_prefix,
            "engines": mask(engines.urls),
            "time_limit_s": SETTINGS.celery_hard_time_limit_s,
            "lease_s": SETTINGS.lease_s,
            "max_attempts": SETTINGS.max_attempts,
        },
    )
    problems = list(SETTINGS.warnings())
    try:
        problems += redis_warnings(_runner().store.redis)
    except redis.RedisError as exc:
        problems.append(f"cannot check Redis: {exc}")
    for problem in problems:
        log.warning(problem)


def announce(interval_s: float) -> None:
    """Mark this worker alive: ``<prefix>workers:<worker id>`` with a TTL of 3 reaper
    intervals, which ``/readyz`` looks for."""
    _runner().store.announce_worker(worker_id(), ttl_s=3 * interval_s)


def enqueue(run_id: str, *, priority: int = 0) -> None:
    run_task.apply_async(args=[run_id], priority=priority)


def reap_once() -> list[tuple[str, str]]:
    """Requeue runs whose lease expired (a worker died) and re-send their messages; also
    re-send runs queued for longer than ``SGFLOW_STALE_QUEUED_S`` (default 300), whose message
    may never have been sent (the service died between storing the run and enqueueing it).
    A duplicate message is harmless: claiming is atomic."""
    store = _runner().store
    outcomes = store.reap()
    for run_id, outcome in outcomes:
        if outcome == "requeued":
            enqueue(run_id)
    for run_id in store.stale_queued(SETTINGS.stale_queued_s):
        enqueue(run_id)
        outcomes.append((run_id, "resent"))
    return outcomes


def sweep_once() -> list[tuple[str, str]]:
    """One batch sweep (:func:`sgflow.store.batches.sweep`): expire batches past their
    deadline, finalize batches whose lines are all final, fail abandoned creations."""
    return _batches().sweep()
