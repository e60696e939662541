"""The run store against a real Redis: claims, leases, fencing, write-once results, the
reaper, cancellation and TTLs. The clock is fake: nothing here sleeps."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import redis

from sgflow.store import (
    Claim,
    LeaseLost,
    RunAlreadyFinished,
    RunNotFound,
    RunStore,
)
from tests.store.conftest import T0, FakeClock, connect


def new_run(store: RunStore, *, tenant: str = "acme", parent: str | None = None, **kw: Any) -> str:
    run_id = kw.pop("run_id", None) or uuid.uuid4().hex
    store.create(
        run_id=run_id,
        tenant=tenant,
        program=kw.pop("program", "extract@1"),
        program_hash="sha256:abc",
        inputs=kw.pop("inputs", {"text": "hello"}),
        parent=parent,
        **kw,
    )
    return run_id


def kinds(store: RunStore, run_id: str) -> list[str]:
    return [kind for _id, kind, _data in store.read_events(run_id, count=1000)]


# -- create -------------------------------------------------------------------------------------


def test_create_stores_a_queued_run_and_is_idempotent(store: RunStore, clock: FakeClock) -> None:
    first = store.create(
        run_id="r1",
        tenant="acme",
        program="extract@1",
        program_hash="h",
        inputs={"text": "é"},
        parent="b1",
        priority=5,
    )
    assert (first.status, first.attempt, first.created_at) == ("queued", 0, T0)
    assert (first.inputs, first.parent, first.priority) == ({"text": "é"}, "b1", 5)
    assert first.lease_until is None and first.worker is None and first.output is None
    clock.advance(10)
    again = store.create(
        run_id="r1", tenant="acme", program="other@2", program_hash="h2", inputs={}
    )
    assert again == first
    assert store.get("r1") == first
    assert kinds(store, "r1") == ["run.queued"]
    assert store.stale_queued(5) == ["r1"]
    assert store.stale_queued(60) == []


def test_missing_runs(store: RunStore) -> None:
    assert store.get("nope") is None
    for call in (
        lambda: store.claim("nope", "w"),
        lambda: store.request_cancel("nope"),
        lambda: store.append_event("nope", "x", {}),
        lambda: store.checkpoint(Claim("nope", 1), "s", {}),
        lambda: store.finish(Claim("nope", 1), status="succeeded"),
    ):
        with pytest.raises(RunNotFound, match="no run 'nope'") as info:
            call()
        assert info.value.code == "run.not_found"
    assert store.heartbeat(Claim("nope", 1)) is False


def test_settings_out_of_range_are_refused(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        RunStore(client, max_attempts=0)
    with pytest.raises(ValueError, match="must be > 0"):
        RunStore(client, lease_s=0)


# -- claims, leases and fencing -------------------------------------------------------------------


def test_claim_takes_a_lease_and_a_live_lease_refuses_others(
    store: RunStore, clock: FakeClock
) -> None:
    run_id = new_run(store)
    claim = store.claim(run_id, "w1")
    assert claim == Claim(run_id, 1)
    run = store.get(run_id)
    assert run is not None
    assert (run.status, run.worker, run.lease_until, run.started_at) == (
        "running",
        "w1",
        T0 + 30,
        T0,
    )
    clock.advance(29)
    assert store.claim(run_id, "w2") is None
    assert store.expired_leases() == []
    clock.advance(1)
    assert store.expired_leases() == [run_id]
    assert kinds(store, run_id) == ["run.queued", "run.started"]


def test_heartbeat_extends_the_lease_of_the_holder_only(store: RunStore, clock: FakeClock) -> None:
    run_id = new_run(store)
    claim = store.claim(run_id, "w1")
    assert claim is not None
    clock.advance(20)
    assert store.heartbeat(claim) is True
    clock.advance(20)  # past the first lease, inside the extended one
    assert store.claim(run_id, "w2") is None
    assert store.expired_leases() == []
    assert store.heartbeat(Claim(run_id, 2)) is False  # an attempt that never was
    clock.advance(31)
    assert store.expired_leases() == [run_id]


def test_a_zombie_cannot_write_after_a_newer_attempt_claimed(
    store: RunStore, clock: FakeClock
) -> None:
    run_id = new_run(store)
    zombie = store.claim(run_id, "w1")
    assert zombie is not None
    store.checkpoint(zombie, "a", {"value": 1, "text": "1", "skipped": False})
    clock.advance(31)  # w1 stalls; its lease runs out
    fresh = store.claim(run_id, "w2")
    assert fresh == Claim(run_id, 2)

    assert store.heartbeat(zombie) is False
    with pytest.raises(LeaseLost, match=r"attempt 1 .* no longer holds") as info:
        store.checkpoint(zombie, "b", {"value": "zombie"})
    assert info.value.code == "run.lease_lost"
    with pytest.raises(LeaseLost):
        store.append_event(zombie, "step.started", {"step": "b"})
    assert store.finish(zombie, status="succeeded", output="zombie") is False

    # the new attempt resumes from the checkpoint the old one wrote, and finishes
    assert store.checkpoints(run_id) == {"a": {"value": 1, "text": "1", "skipped": False}}
    store.append_event(fresh, "step.started", {"step": "b"})
    assert store.checkpoint(fresh, "b", {"value": 2, "text": "2", "skipped": False})
    assert store.finish(fresh, status="succeeded", output={"answer": 2}) is True
    run = store.get(run_id)
    assert run is not None
    assert (run.status, run.output, run.attempt, run.worker) == (
        "succeeded",
        {"answer": 2},
        2,
        "w2",
    )
    assert kinds(store, run_id).count("step.started") == 1


def test_checkpoints_are_written_once(store: RunStore) -> None:
    run_id = new_run(store)
    claim = store.claim(run_id, "w1")
    assert claim is not None
    saved = {"value": {"name": "Ada"}, "text": '{"name":"Ada"}', "skipped": False}
    assert store.checkpoint(claim, "extract", saved) is True
    assert store.checkpoint(claim, "extract", {"value": "other"}) is False
    assert store.checkpoint(claim, "skipped", {"value": None, "text": None, "skipped": True})
    assert store.checkpoints(run_id) == {
        "extract": saved,
        "skipped": {"value": None, "text": None, "skipped": True},
    }
    assert store.checkpoints("never-ran") == {}


def test_the_result_is_written_once(store: RunStore) -> None:
    run_id = new_run(store)
    claim = store.claim(run_id, "w1")
    assert claim is not None
    assert store.finish(claim, status="succeeded", output={"n": 1}) is True
    assert store.finish(claim, status="failed", error={"code": "x", "message": "y"}) is False
    run = store.get(run_id)
    assert run is not None
    assert (run.status, run.output, run.error) == ("succeeded", {"n": 1}, None)
    assert run.finished_at == T0 and run.finished and run.lease_until is None
    assert store.claim(run_id, "w2") is None
    assert store.expired_leases(T0 + 10_000) == []
    with pytest.raises(RunAlreadyFinished, match="is finished") as info:
        store.checkpoint(claim, "late", {})
    assert info.value.code == "run.already_finished"
    with pytest.raises(RunAlreadyFinished):
        store.append_event(claim, "step.started", {})
    events = store.read_events(run_id)
    assert [k for _i, k, _d in events] == ["run.queued", "run.started", "run.finished"]
    assert events[-1][2] == {"status": "succeeded", "attempt": 1, "error": None}
    with pytest.raises(ValueError, match="finish needs one of"):
        store.finish(claim, status="running")  # type: ignore[arg-type]


def deliver(store: RunStore, run_id: str, worker: str, results: list[str]) -> None:
    """What a Celery task does with one delivery of "start this run"."""
    claim = store.claim(run_id, worker)
    if claim is None:
        return
    store.checkpoint(claim, "only", {"value": worker, "text": worker, "skipped": False})
    if store.finish(claim, status="succeeded", output=worker):
        results.append(worker)


def test_the_same_task_delivered_twice_yields_one_result(store: RunStore) -> None:
    run_id = new_run(store)
    results: list[str] = []
    deliver(store, run_id, "w1", results)
    deliver(store, run_id, "w2", results)
    assert results == ["w1"]

    # concurrently: every delivery races for the claim, one wins
    run_id = new_run(store)
    results = []
    barrier = threading.Barrier(8)

    def racer(n: int) -> None:
        barrier.wait()
        deliver(store, run_id, f"w{n}", results)

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1
    run = store.get(run_id)
    assert run is not None and run.attempt == 1 and run.output == results[0]
    assert kinds(store, run_id).count("run.finished") == 1


# -- the reaper ----------------------------------------------------------------------------------


def test_reaper_requeues_then_fails_after_max_attempts(store: RunStore, clock: FakeClock) -> None:
    run_id = new_run(store)
    for attempt in (1, 2):
        claim = store.claim(run_id, f"w{attempt}")
        assert claim == Claim(run_id, attempt)
        clock.advance(31)
        assert store.reap() == [(run_id, "requeued")]
        run = store.get(run_id)
        assert run is not None and (run.status, run.attempt, run.worker) == (
            "queued",
            attempt,
            None,
        )
        assert store.heartbeat(claim) is False  # requeued: the old attempt is fenced off
        with pytest.raises(LeaseLost):
            store.checkpoint(claim, "s", {})
    assert store.claim(run_id, "w3") == Claim(run_id, 3)
    clock.advance(31)
    assert store.reap() == [(run_id, "failed")]
    assert store.reap() == []
    run = store.get(run_id)
    assert run is not None and run.status == "failed"
    assert run.error is not None and run.error["code"] == "run.max_attempts"
    assert run.error["limit"] == 3 and "3 attempts" in run.error["message"]
    assert store.claim(run_id, "w4") is None
    assert kinds(store, run_id).count("run.requeued") == 2


def test_a_claim_past_max_attempts_fails_the_run(store: RunStore, clock: FakeClock) -> None:
    run_id = new_run(store)
    for _ in range(3):  # each worker dies; the next delivery takes over without a reaper
        assert store.claim(run_id, "w") is not None
        clock.advance(31)
    assert store.claim(run_id, "w") is None
    run = store.get(run_id)
    assert run is not None and run.status == "failed" and run.attempt == 3
    assert run.error is not None and run.error["code"] == "run.max_attempts"


def test_reaper_leaves_a_run_whose_heartbeat_came_in_time(
    store: RunStore, clock: FakeClock
) -> None:
    run_id = new_run(store)
    claim = store.claim(run_id, "w1")
    assert claim is not None
    clock.advance(31)
    assert store.expired_leases() == [run_id]
    assert store.heartbeat(claim) is True  # lands between the scan and the reap
    assert store.reap(now=T0 + 31) == []
    assert store.heartbeat(claim) is True


# -- cancellation -------------------------------------------------------------------------------


def test_cancel_a_queued_run_at_once(store: RunStore, client: redis.Redis, prefix: str) -> None:
    run_id = new_run(store)
    assert store.request_cancel(run_id) == "cancelled"
    run = store.get(run_id)
    assert run is not None and run.status == "cancelled" and run.finished_at == T0
    assert store.claim(run_id, "w1") is None
    assert store.request_cancel(run_id) == "finished"
    assert store.read_events(run_id)[-1][1:] == (
        "run.finished",
        {"status": "cancelled", "attempt": 0, "error": None},
    )
    assert 0 < client.ttl(f"{prefix}run:{run_id}") <= 3600
    assert store.stale_queued(0, now=T0 + 1) == []


def test_cancel_a_running_run_between_steps(store: RunStore, clock: FakeClock) -> None:
    run_id = new_run(store)
    claim = store.claim(run_id, "w1")
    assert claim is not None
    assert store.is_cancel_requested(run_id) is False
    assert store.request_cancel(run_id) == "requested"
    assert store.request_cancel(run_id) == "requested"
    assert store.is_cancel_requested(run_id) is True
    run = store.get(run_id)
    assert run is not None and run.status == "running" and run.cancel_requested
    assert store.finish(claim, status="cancelled") is True
    assert kinds(store, run_id) == [
        "run.queued",
        "run.started",
        "run.cancel_requested",
        "run.finished",
    ]

    # a worker that died after the request is not retried: the run ends cancelled
    other = new_run(store)
    assert store.claim(other, "w1") is not None
    store.request_cancel(other)
    clock.advance(31)
    assert store.reap() == [(other, "cancelled")]
    third = new_run(store)
    assert store.claim(third, "w1") is not None
    store.request_cancel(third)
    clock.advance(31)
    assert store.claim(third, "w2") is None
    assert [store.get(r).status for r in (other, third)] == ["cancelled", "cancelled"]  # type: ignore[union-attr]


# -- TTLs ------------------------------------------------------------------------------------------


def test_finish_sets_the_result_ttl_on_every_key_of_the_run(
    store: RunStore, client: redis.Redis, prefix: str
) -> None:
    run_id = new_run(store)
    claim = store.claim(run_id, "w1")
    assert claim is not None
    store.checkpoint(claim, "s", {"value": 1})
    keys = [f"{prefix}run:{run_id}", f"{prefix}run:{run_id}:steps", f"{prefix}run:{run_id}:events"]
    assert [client.ttl(k) for k in keys] == [-1, -1, -1]
    store.finish(claim, status="failed", error={"code": "output.invalid", "message": "no"})
    assert all(3590 < client.ttl(k) <= 3600 for k in keys)
    run = store.get(run_id)
    assert run is not None and run.error == {"code": "output.invalid", "message": "no"}


def test_a_client_that_decodes_responses_works_the_same(prefix: str, clock: FakeClock) -> None:
    client = connect(decode_responses=True)
    try:
        store = RunStore(client, prefix=prefix, clock=clock)
        run_id = new_run(store, parent="b")
        claim = store.claim(run_id, "w")
        assert claim is not None
        store.checkpoint(claim, "s", {"value": "ü"})
        assert store.checkpoints(run_id) == {"s": {"value": "ü"}}
        assert store.finish(claim, status="succeeded", output=[1])
        assert kinds(store, run_id)[-1] == "run.finished"
        assert store.list_runs("acme")[0][0].output == [1]
        assert store.batch_progress("b").completed == 1
    finally:
        client.close()
