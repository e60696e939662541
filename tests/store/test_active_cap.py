"""The per-tenant concurrency cap, counted in the scripts that create and end runs: atomic
under concurrent submissions, released exactly once by every way a run stops being active,
blind to batch lines. Real Redis, fake clock."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from sgflow.store import ActiveRunLimit, IdempotencyConflict, RunStore, Submitted
from tests.store.conftest import FakeClock


def submit(store: RunStore, *, tenant: str = "acme", cap: int | None = 5, **kw: Any) -> Submitted:
    return store.submit(
        run_id=kw.pop("run_id", None) or uuid.uuid4().hex,
        tenant=tenant,
        program="p@1",
        program_hash="h",
        inputs={},
        max_active=cap,
        **kw,
    )


def test_concurrent_submissions_never_exceed_the_cap(store: RunStore) -> None:
    cap, n = 5, 40
    barrier = threading.Barrier(n)
    created: list[str] = []
    refused: list[ActiveRunLimit] = []
    lock = threading.Lock()

    def racer() -> None:
        barrier.wait()
        try:
            run = submit(store, cap=cap).run
        except ActiveRunLimit as exc:
            with lock:
                refused.append(exc)
        else:
            with lock:
                created.append(run.id)

    threads = [threading.Thread(target=racer) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == cap and len(refused) == n - cap
    assert store.active_runs("acme") == cap
    assert {e.code for e in refused} == {"limit.concurrent_runs"}
    assert all(e.limit == cap and e.active == cap for e in refused)
    assert "the limit is 5" in refused[0].message
    # a refusal creates nothing: only the admitted runs exist, are listed and queued
    listed, _ = store.list_runs("acme", limit=100)
    assert sorted(r.id for r in listed) == sorted(created)
    assert store.redis.zcard(store.keys.queued) == cap
    # an ending frees a place, for exactly one more
    claim = store.claim(created[0], "w")
    assert claim is not None and store.finish(claim, status="succeeded")
    assert store.active_runs("acme") == cap - 1
    submit(store, cap=cap)
    with pytest.raises(ActiveRunLimit):
        submit(store, cap=cap)


def test_tenants_are_capped_separately(store: RunStore) -> None:
    submit(store, tenant="acme", cap=1)
    with pytest.raises(ActiveRunLimit):
        submit(store, tenant="acme", cap=1)
    submit(store, tenant="globex", cap=1)
    assert (store.active_runs("acme"), store.active_runs("globex")) == (1, 1)


# -- every way a run stops being active releases its place once ----------------------------------


def _finish(status: str) -> Callable[[RunStore, FakeClock, str], None]:
    def end(store: RunStore, clock: FakeClock, run_id: str) -> None:
        claim = store.claim(run_id, "w")
        assert claim is not None
        assert store.finish(claim, status=status)  # type: ignore[arg-type]
        assert not store.finish(claim, status="failed")  # written once: no second release

    return end


def _cancel_queued(store: RunStore, clock: FakeClock, run_id: str) -> None:
    assert store.request_cancel(run_id) == "cancelled"
    assert store.request_cancel(run_id) == "finished"


def _cancel_running_then_claim(store: RunStore, clock: FakeClock, run_id: str) -> None:
    assert store.claim(run_id, "w1") is not None
    assert store.request_cancel(run_id) == "requested"
    clock.advance(31)  # the worker died; the next delivery ends it cancelled
    assert store.claim(run_id, "w2") is None


def _cancel_running_then_reap(store: RunStore, clock: FakeClock, run_id: str) -> None:
    assert store.claim(run_id, "w1") is not None
    store.request_cancel(run_id)
    clock.advance(31)
    assert store.reap() == [(run_id, "cancelled")]


def _reaper_max_attempts(store: RunStore, clock: FakeClock, run_id: str) -> None:
    outcomes = []
    for _ in range(3):
        assert store.claim(run_id, "w") is not None
        clock.advance(31)
        outcomes += store.reap()
    assert outcomes[-1] == (run_id, "failed")


def _claim_past_max_attempts(store: RunStore, clock: FakeClock, run_id: str) -> None:
    for _ in range(3):
        assert store.claim(run_id, "w") is not None
        clock.advance(31)
    assert store.claim(run_id, "w") is None


def _deadline_while_queued(store: RunStore, clock: FakeClock, run_id: str) -> None:
    clock.advance(11)
    assert store.expire_deadlines() == [(run_id, "deadline_exceeded")]


def _claim_past_deadline(store: RunStore, clock: FakeClock, run_id: str) -> None:
    clock.advance(11)
    assert store.claim(run_id, "w") is None


def _reap_past_deadline(store: RunStore, clock: FakeClock, run_id: str) -> None:
    assert store.claim(run_id, "w") is not None
    clock.advance(31)
    assert (run_id, "deadline_exceeded") in store.reap()


ENDINGS = {
    "succeeded": _finish("succeeded"),
    "failed": _finish("failed"),
    "cancelled by its worker": _finish("cancelled"),
    "cancel while queued": _cancel_queued,
    "cancel while running, then a claim": _cancel_running_then_claim,
    "cancel while running, then the reaper": _cancel_running_then_reap,
    "reaper: max attempts": _reaper_max_attempts,
    "claim: max attempts": _claim_past_max_attempts,
    "deadline while queued": _deadline_while_queued,
    "claim past the deadline": _claim_past_deadline,
    "reaper past the deadline": _reap_past_deadline,
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_ending_releases_the_place_exactly_once(
    store: RunStore, client: redis.Redis, clock: FakeClock, ending: str
) -> None:
    other = submit(store).run.id  # stays queued: the count must come back to 1, not 0
    deadline_at = clock.now + 10 if "deadline" in ending else None
    run = submit(store, deadline_at=deadline_at).run
    assert store.active_runs("acme") == 2
    ENDINGS[ending](store, clock, run.id)
    final = store.get(run.id)
    assert final is not None and final.finished
    assert store.active_runs("acme") == 1
    assert store.request_cancel(other) == "cancelled"
    assert store.active_runs("acme") == 0
    assert client.hexists(store.keys.active, "acme") == 0  # no field left at 0
    store.reap()  # nothing more to release, whatever the reaper finds
    assert store.active_runs("acme") == 0


# -- batch lines and idempotency -------------------------------------------------------------------


def test_batch_lines_are_outside_the_cap(store: RunStore) -> None:
    lines = [
        {"run_id": f"line-{i}", "tenant": "acme", "program": "p@1", "program_hash": "h",
         "inputs": {}, "parent": "b1"}
        for i in range(500)
    ]  # fmt: skip
    store.create_many(lines)
    assert store.active_runs("acme") == 0
    submit(store, cap=2)
    submit(store, cap=2)
    with pytest.raises(ActiveRunLimit) as info:
        submit(store, cap=2)
    assert info.value.active == 2  # the 500 queued lines are not counted
    claim = store.claim("line-0", "w")
    assert claim is not None and store.finish(claim, status="succeeded")
    store.request_cancel("line-1")
    assert store.active_runs("acme") == 2  # nor released


def test_an_idempotency_key_creates_and_counts_one_run(store: RunStore) -> None:
    n = 10
    barrier = threading.Barrier(n)
    results: list[Submitted] = []

    def racer() -> None:
        barrier.wait()
        results.append(submit(store, idempotency_key="k1", digest="d1"))

    threads = [threading.Thread(target=racer) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.created for r in results) == 1
    assert len({r.run.id for r in results}) == 1
    assert store.active_runs("acme") == 1
    assert store.idempotent_run("acme", "k1") == (results[0].run.id, "d1")
    with pytest.raises(IdempotencyConflict, match="different request body"):
        submit(store, idempotency_key="k1", digest="other")
    assert submit(store, tenant="globex", idempotency_key="k1", digest="x").created


def test_a_key_whose_run_expired_is_taken_over(store: RunStore, client: redis.Redis) -> None:
    first = submit(store, idempotency_key="k", digest="d").run
    store.request_cancel(first.id)
    client.delete(store.keys.run(first.id))  # as a result TTL shorter than 24 h would
    again = submit(store, idempotency_key="k", digest="d")
    assert again.created and again.run.id != first.id
    assert store.idempotent_run("acme", "k") == (again.run.id, "d")


def test_a_refused_submission_leaves_no_trace(store: RunStore, client: redis.Redis) -> None:
    submit(store, cap=1)
    with pytest.raises(ActiveRunLimit):
        submit(store, cap=1, run_id="refused", idempotency_key="k", digest="d")
    assert not client.exists(store.keys.run("refused"), store.keys.events("refused"))
    assert store.idempotent_run("acme", "k") is None
