"""Run deadlines in the store: claims and the reaper fail runs past their deadline with
``run.deadline_exceeded``. Real Redis, fake clock."""

from __future__ import annotations

from sgflow.store import RunStore
from tests.store.conftest import T0, FakeClock
from tests.store.test_runs import kinds, new_run


def test_create_stores_and_indexes_the_deadline(store: RunStore) -> None:
    with_deadline = new_run(store, deadline_at=T0 + 60)
    without = new_run(store)
    run = store.get(with_deadline)
    assert run is not None and run.deadline_at == T0 + 60
    assert not run.past_deadline(T0 + 59.9) and run.past_deadline(T0 + 60)
    plain = store.get(without)
    assert plain is not None and plain.deadline_at is None and not plain.past_deadline(T0 + 1e9)
    assert store.redis.zscore(store.keys.deadlines, with_deadline) == T0 + 60
    assert store.redis.zscore(store.keys.deadlines, without) is None


def test_a_claim_past_the_deadline_fails_the_run_without_running_it(
    store: RunStore, clock: FakeClock
) -> None:
    run_id = new_run(store, deadline_at=T0 + 10)
    clock.advance(10)
    assert store.claim(run_id, "w1") is None
    run = store.get(run_id)
    assert run is not None and run.status == "failed" and run.attempt == 0
    assert run.error is not None and run.error["code"] == "run.deadline_exceeded"
    assert kinds(store, run_id) == ["run.queued", "run.finished"]


def test_a_claim_before_the_deadline_runs(store: RunStore, clock: FakeClock) -> None:
    run_id = new_run(store, deadline_at=T0 + 10)
    clock.advance(9)
    assert store.claim(run_id, "w1") is not None


def test_the_reaper_fails_queued_runs_past_their_deadline(
    store: RunStore, clock: FakeClock
) -> None:
    due = new_run(store, deadline_at=T0 + 5)
    later = new_run(store, deadline_at=T0 + 500)
    running = new_run(store, deadline_at=T0 + 5)
    assert store.claim(running, "w1") is not None
    clock.advance(6)
    outcomes = store.reap()
    assert (due, "deadline_exceeded") in outcomes
    assert {r for r, _ in outcomes} == {due}
    failed = store.get(due)
    assert failed is not None and failed.status == "failed"
    assert failed.error is not None and failed.error["code"] == "run.deadline_exceeded"
    # the running run is its worker's to stop; it leaves the index like every run past due
    still = store.get(running)
    assert still is not None and still.status == "running"
    assert store.redis.zrange(store.keys.deadlines, 0, -1) == [later.encode()]


def test_an_expired_lease_past_the_deadline_fails_instead_of_requeueing(
    store: RunStore, clock: FakeClock
) -> None:
    run_id = new_run(store, deadline_at=T0 + 40)
    assert store.claim(run_id, "w1") is not None
    clock.advance(store.lease_s + 15)  # lease and deadline both past
    assert store.reap() == [(run_id, "deadline_exceeded")]
    run = store.get(run_id)
    assert run is not None and run.status == "failed"
    assert run.error is not None and run.error["code"] == "run.deadline_exceeded"
