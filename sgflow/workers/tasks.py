"""The Celery task (one per run) and the reaper, bound to an app built from the environment.

``celery -A sgflow.workers.tasks worker`` (what ``sgflow worker`` runs) imports this module;
settings come from the environment: ``REDIS_URL``, ``SGFLOW_ENGINE_URL`` (an SGLang server or
router), ``SGFLOW_PREFIX``, ``SGFLOW_LEASE_S``, ``SGFLOW_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import cache
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown

from sgflow.programs import SgflowEndpoint
from sgflow.workers.celery_app import TASK_RUN, make_celery, worker_id
from sgflow.workers.runner import ProgramBodies, Runner
from sgflow.workers.store import RunStore

__all__ = ["announce", "app", "enqueue", "reap_once", "run_task"]

log = logging.getLogger("sgflow.workers.tasks")

app = make_celery(
    visibility_timeout_s=int(os.environ.get("SGFLOW_VISIBILITY_TIMEOUT_S", "3600")),
    hard_time_limit_s=int(os.environ.get("SGFLOW_HARD_TIME_LIMIT_S", "1800")),
)


@cache
def _runner() -> Runner:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    prefix = os.environ.get("SGFLOW_PREFIX", "sgflow:")
    store = RunStore(
        client,
        prefix=prefix,
        lease_s=float(os.environ.get("SGFLOW_LEASE_S", "30")),
        max_attempts=int(os.environ.get("SGFLOW_MAX_ATTEMPTS", "3")),
    )
    url = os.environ.get("SGFLOW_ENGINE_URL", "http://127.0.0.1:30000")
    return Runner(
        store,
        ProgramBodies(client, prefix=prefix),
        endpoint_factory=lambda: SgflowEndpoint(url),
        worker_id=worker_id(),
    )


@app.task(name=TASK_RUN, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def run_task(run_id: str) -> str:
    outcome = _runner().run(run_id)
    log.info("run task done", extra={"run_id": run_id, "outcome": outcome})
    return outcome


_reaper_stop = threading.Event()


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_reaper(**_: Any) -> None:
    """Every worker also reaps: the reap is atomic, so several reapers are harmless."""

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

    threading.Thread(target=loop, name="sgflow-reaper", daemon=True).start()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_reaper(**_: Any) -> None:
    _reaper_stop.set()


def announce(interval_s: float) -> None:
    """Mark this worker alive: ``<prefix>workers:<worker id>`` with a TTL of 3 reaper
    intervals, which ``/readyz`` looks for."""
    store = _runner().store
    key = store.keys.worker(worker_id())
    store.redis.set(key, repr(store.clock()), px=int(3 * interval_s * 1000))


def enqueue(run_id: str, *, priority: int = 0) -> None:
    run_task.apply_async(args=[run_id], priority=priority)


STALE_QUEUED_S = float(os.environ.get("SGFLOW_STALE_QUEUED_S", "300"))


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
    for run_id in store.stale_queued(STALE_QUEUED_S):
        enqueue(run_id)
        outcomes.append((run_id, "resent"))
    return outcomes
