"""Batches in the run store without the API: bulk creation, finalizing → completed with a
TTL, the sweep that expires and finalizes batches nobody reads, the step-latency histogram."""

from __future__ import annotations

import redis

from sgflow.store import STALE_VALIDATING_S, BatchStore, RunStore, Stats, batch_status
from sgflow.store.records import as_str
from tests.store.conftest import FakeClock


def new_batch(
    batches: BatchStore, n: int, *, deadline_at: float | None = None, start: bool = True
) -> tuple[str, list[str]]:
    record = batches.create(
        batch_id=f"batch_{n}_{deadline_at}",
        tenant="acme",
        program="p@1",
        program_hash="h",
        total=n,
        deadline_at=deadline_at,
    )
    ids = [f"{record.id}-r{i}" for i in range(n)]
    batches.add_lines(record, [(f"c{i}", ids[i], {"i": i}) for i in range(n)])
    if start:
        batches.start(record.id)
    return record.id, ids


def finish(store: RunStore, run_id: str, status: str = "succeeded") -> None:
    claim = store.claim(run_id, "w")
    assert claim is not None
    assert store.finish(claim, status=status, output={"ok": 1})  # type: ignore[arg-type]


def status_of(batches: BatchStore, batch_id: str) -> str:
    record = batches.get(batch_id)
    assert record is not None
    return batch_status(record, batches.progress(batch_id))


def test_lines_are_created_in_bulk_as_queued_runs(store: RunStore) -> None:
    batches = BatchStore(store)
    batch_id, ids = new_batch(batches, 1203)
    assert batches.lines(batch_id, 0, -1)[1200] == ("c1200", ids[1200])
    run = store.get(ids[7])
    assert run is not None and run.status == "queued" and run.parent == batch_id
    assert run.inputs == {"i": 7} and run.program_hash == "h"
    assert store.redis.zcard(store.keys.queued) == 1203
    assert store.stats.read()[0]["submitted"] == 1203
    assert status_of(batches, batch_id) == "in_progress"


def test_finalizing_then_completed_with_a_ttl(
    store: RunStore, client: redis.Redis, clock: FakeClock
) -> None:
    batches = BatchStore(store)
    batch_id, ids = new_batch(batches, 3)
    for run_id in ids:
        finish(store, run_id)
    assert status_of(batches, batch_id) == "finalizing"  # every line final, end not written
    assert client.ttl(batches.key(batch_id)) == -1
    clock.advance(5)
    assert batches.finalize(batch_id) == "completed"
    assert batches.finalize(batch_id) is None  # once
    record = batches.get(batch_id)
    assert record is not None
    assert record.status == "completed" and record.completed_at == clock.now
    assert status_of(batches, batch_id) == "completed"
    for key in (
        batches.key(batch_id),
        batches.runs_key(batch_id),
        store.keys.batch_lines(batch_id),
        store.keys.batch_counts(batch_id),
        store.keys.run(ids[0]),
    ):
        assert 3500 < client.ttl(key) <= 3600, key
    assert client.zscore(batches.open_key, batch_id) is None


def test_the_worker_that_ends_the_last_line_finalizes(store: RunStore) -> None:
    batches = BatchStore(store)
    batch_id, ids = new_batch(batches, 2)
    finish(store, ids[0])
    assert batches.after_line(ids[0]) is None
    finish(store, ids[1], "failed")
    assert batches.after_line(ids[1]) == "completed"
    assert batches.progress(batch_id).failed == 1


def test_sweep_expires_a_batch_nobody_reads(
    store: RunStore, client: redis.Redis, clock: FakeClock
) -> None:
    batches = BatchStore(store)
    batch_id, ids = new_batch(batches, 4, deadline_at=clock.now + 10)
    finish(store, ids[0])
    claim = store.claim(ids[1], "w")  # running when the deadline passes
    assert claim is not None
    assert batches.sweep() == []
    clock.advance(11)
    assert batches.sweep() == [(batch_id, "expired")]
    record = batches.get(batch_id)
    assert record is not None and record.status == "expired"
    assert record.expired_at == clock.now and record.finalized_at == clock.now
    progress = batches.progress(batch_id)
    assert (progress.completed, progress.failed) == (1, 3)
    marks = client.hgetall(store.keys.batch_lines(batch_id))
    assert sorted(as_str(v) for v in marks.values()) == ["expired"] * 3 + ["succeeded"]
    run = store.get(ids[2])
    assert run is not None and run.status == "cancelled"
    assert store.is_cancel_requested(ids[1])
    assert client.ttl(batches.key(batch_id)) > 0
    assert client.zscore(batches.deadlines_key, batch_id) is None
    # the running line ends later: its line stays expired, the counts still add up
    assert store.finish(claim, status="succeeded", output={})
    assert batches.progress(batch_id) == progress
    assert batches.sweep() == []


def test_sweep_finalizes_and_fails_abandoned_creations(
    store: RunStore, client: redis.Redis, clock: FakeClock
) -> None:
    batches = BatchStore(store)
    done_id, ids = new_batch(batches, 2)
    for run_id in ids:
        finish(store, run_id)
    stuck = batches.create(
        batch_id="batch_stuck", tenant="acme", program="p@1", program_hash="h", total=5,
        deadline_at=None,
    )  # fmt: skip
    batches.add_lines(stuck, [("a", "stuck-a", {}), ("b", "stuck-b", {})])  # then the API died
    assert batches.sweep() == [(done_id, "completed")]
    clock.advance(STALE_VALIDATING_S + 1)
    assert batches.sweep() == [("batch_stuck", "failed")]
    record = batches.get("batch_stuck")
    assert record is not None and record.status == "failed"
    assert record.error is not None and record.error["code"] == "batch.creation_interrupted"
    progress = batches.progress("batch_stuck")
    assert (progress.completed, progress.failed) == (0, 5)
    assert client.ttl(batches.key("batch_stuck")) > 0


def test_reads_expire_and_finalize_too(store: RunStore, clock: FakeClock) -> None:
    batches = BatchStore(store)
    batch_id, _ = new_batch(batches, 2, deadline_at=clock.now + 1)
    record = batches.get(batch_id)
    assert record is not None
    clock.advance(2)
    fresh, progress = batches.refresh(record)
    assert fresh.status == "expired" and progress.failed == 2


def test_listing_drops_batches_whose_keys_expired(
    store: RunStore, client: redis.Redis, clock: FakeClock
) -> None:
    batches = BatchStore(store)
    made = []
    for i in range(5):
        clock.advance(1)
        made.append(new_batch(batches, 1, deadline_at=float(i))[0])
    client.delete(batches.key(made[3]), batches.key(made[1]))  # as their TTL would
    listed = batches.list("acme", limit=2)
    assert listed is not None
    records, more = listed
    assert [r.id for r in records] == [made[4], made[2]] and more
    assert client.zcard(batches.tenant_key("acme")) == 3
    listed = batches.list("acme", limit=2, after=made[2])
    assert listed is not None and [r.id for r in listed[0]] == [made[0]] and not listed[1]
    assert batches.list("acme", after="batch_nope") is None


def test_step_latency_histogram(client: redis.Redis, prefix: str) -> None:
    stats = Stats(client, prefix=prefix)
    for latency in (0.05, 0.1, 0.3, 0.3, 7.0, 120.0):
        stats.step_finished(latency, {})
    stats.step_finished(None, {})  # unknown latency: counted as a step, not in the histogram
    buckets, total = stats.latency_histogram()
    assert buckets == [
        ("0.1", 2), ("0.25", 2), ("0.5", 4), ("1.0", 4), ("2.5", 4), ("5.0", 4),
        ("10.0", 5), ("30.0", 5), ("60.0", 5), ("+Inf", 6),
    ]  # fmt: skip
    assert abs(total - 127.75) < 1e-9
