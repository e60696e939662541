"""Engine trouble is retried with backoff, then the run fails with a clear code. Real Redis;
the engine is an endpoint factory that cannot connect (what an unreachable engine does)."""

from __future__ import annotations

import uuid

import pytest

from sgflow.programs.checker import parse_program
from sgflow.programs.compiler import program_hash
from sgflow.store import ProgramBodies, RunStore
from sgflow.workers.runner import Runner

PROGRAM = "program: p\nsteps:\n  - id: a\n    user: Say hi.\n    gen: {max_tokens: 4}\n"


def unreachable() -> object:
    raise ConnectionError("connection refused (test: no engine listens)")


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
        endpoint_factory=unreachable,
        worker_id="w",  # type: ignore[arg-type]
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
