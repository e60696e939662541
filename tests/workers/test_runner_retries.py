"""Engine trouble is retried with backoff (on the next engine, when there are several), then
the run fails with a clear code; the hard time limit fails a run whose thread is stuck. Real
Redis; the engine is an endpoint factory that cannot connect or never answers (what an
unreachable or hung engine does)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from sgflow.execution import SgflowEndpoint
from sgflow.programs.checker import parse_program
from sgflow.programs.compiler import program_hash
from sgflow.store import ProgramBodies, RunStore
from sgflow.workers.engines import EnginePool
from sgflow.workers.runner import Runner

PROGRAM = "program: p\nsteps:\n  - id: a\n    user: Say hi.\n    gen: {max_tokens: 4}\n"


def unreachable(url: str) -> SgflowEndpoint:
    raise ConnectionError(f"connection refused (test: no engine listens at {url})")


def test_unreachable_engine_is_retried_with_backoff_then_fails(store: RunStore) -> None:
    prog, errors = parse_program(PROGRAM)
    assert prog is not None, errors
    bodies = ProgramBodies(store.redis, prefix=store.keys.prefix)
    digest = program_hash(prog)
    bodies.put(digest, prog.model_dump(mode="json", by_alias=True, exclude_none=True))
    run_id = uuid.uuid4().hex
    store.create(run_id=run_id, tenant="t", program="p@1", program_hash=digest, inputs={})
    runner = Runner(
        store,
        bodies,
        engines=EnginePool(["http://127.0.0.1:9"], factory=unreachable),
        worker_id="w",
        engine_retries=3,
        backoff_s=0.01,
    )
    assert runner.run(run_id) == "failed"
    run = store.get(run_id)
    assert run is not None and run.error is not None
    assert run.error["code"] == "engine.unavailable"
    assert "connection refused" in run.error["message"]
    retries = [d for _, k, d in store.read_events(run_id, count=100) if k == "run.retrying"]
    assert [r["retry"] for r in retries] == [1, 2, 3]
    assert [r["delay_s"] for r in retries] == pytest.approx([0.01, 0.02, 0.04])


def test_the_backoff_doubles_up_to_its_cap(store: RunStore) -> None:
    run_id = _stored_run(store)
    runner = Runner(
        store,
        ProgramBodies(store.redis, prefix=store.keys.prefix),
        engines=EnginePool(["http://127.0.0.1:9"], factory=unreachable),
        worker_id="w",
        engine_retries=5,
        backoff_s=0.01,
        max_backoff_s=0.03,
    )
    assert runner.run(run_id) == "failed"
    retries = [d for _, k, d in store.read_events(run_id, count=100) if k == "run.retrying"]
    assert [r["delay_s"] for r in retries] == pytest.approx([0.01, 0.02, 0.03, 0.03, 0.03])
    assert (
        Runner(
            store, ProgramBodies(store.redis), engines=runner.engines, worker_id="x"
        ).engine_retries
        == 6
    )


def _stored_run(store: RunStore) -> str:
    prog, errors = parse_program(PROGRAM)
    assert prog is not None, errors
    bodies = ProgramBodies(store.redis, prefix=store.keys.prefix)
    digest = program_hash(prog)
    bodies.put(digest, prog.model_dump(mode="json", by_alias=True, exclude_none=True))
    run_id = uuid.uuid4().hex
    store.create(run_id=run_id, tenant="t", program="p@1", program_hash=digest, inputs={})
    return run_id


def test_each_engine_retry_goes_to_the_next_engine_of_the_runs_order(store: RunStore) -> None:
    run_id = _stored_run(store)
    tried: list[str] = []

    def refuse(url: str) -> SgflowEndpoint:
        tried.append(url)
        raise ConnectionError(f"connection refused (test: no engine listens at {url})")

    pool = EnginePool([f"http://127.0.0.1:{p}" for p in (9, 10, 11)], factory=refuse)
    runner = Runner(
        store,
        ProgramBodies(store.redis, prefix=store.keys.prefix),
        engines=pool,
        worker_id="w",
        engine_retries=2,
        backoff_s=0.01,
    )
    assert runner.run(run_id) == "failed"
    assert tried == pool.order(run_id)  # three engines, three different ones, in its order


def test_the_time_limit_fails_the_run_while_its_thread_is_still_stuck(store: RunStore) -> None:
    """The watchdog finishes the run with ``run.time_limit`` at the limit, while the attempt's
    thread is blocked (here in an engine that never answers, simulated by a factory that
    blocks); the thread's own result, when it comes back, is not written."""
    run_id = _stored_run(store)
    seen_while_stuck: list[str] = []
    release = threading.Event()

    def stuck(url: str) -> SgflowEndpoint:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run = store.get(run_id)
            if run is not None and run.status == "failed":
                seen_while_stuck.append(run.error["code"] if run.error else "")
                break
            release.wait(0.05)
        raise ConnectionError("connection refused (test: the engine never answered)")

    runner = Runner(
        store,
        ProgramBodies(store.redis, prefix=store.keys.prefix),
        engines=EnginePool(["http://127.0.0.1:9"], factory=stuck),
        worker_id="w",
        engine_retries=3,
        backoff_s=5,
        time_limit_s=0.5,
    )
    assert runner.run(run_id) == "time_limit"
    assert seen_while_stuck == ["run.time_limit"]
    run = store.get(run_id)
    assert run is not None and run.status == "failed" and run.error is not None
    assert run.error["code"] == "run.time_limit"
    assert run.error["limit"] == 0.5
    assert "SGFLOW_CELERY_HARD_TIME_LIMIT_S" in run.error["hint"]
    kinds = [k for _, k, _ in store.read_events(run_id, count=100)]
    assert kinds.count("run.finished") == 1
    assert "run.retrying" not in kinds  # no retry after the limit


def test_no_time_limit_by_default_and_a_bad_one_is_refused(store: RunStore) -> None:
    bodies = ProgramBodies(store.redis, prefix=store.keys.prefix)
    pool = EnginePool(["http://127.0.0.1:9"], factory=unreachable)
    assert Runner(store, bodies, engines=pool, worker_id="w").time_limit_s is None
    with pytest.raises(ValueError, match="time_limit_s must be positive"):
        Runner(store, bodies, engines=pool, worker_id="w", time_limit_s=0)
