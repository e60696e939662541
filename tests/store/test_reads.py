"""The run store's reading side and counters: the event stream resumed from an id, listing
with cursor pagination and tenant isolation, batch counters."""

from __future__ import annotations

import threading
import time

import pytest
import redis

import sgflow.store
from sgflow.store import InvalidCursor, RunStore
from tests.store.conftest import FakeClock
from tests.store.test_runs import new_run

# -- events ----------------------------------------------------------------------------------------


def test_a_reader_resumes_after_the_last_event_it_saw(store: RunStore) -> None:
    run_id = new_run(store)
    claim = store.claim(run_id, "w1")
    assert claim is not None
    ids = [store.append_event(claim, "step.delta", {"n": n}) for n in range(5)]
    everything = store.read_events(run_id)
    assert [i for i, _k, _d in everything][-5:] == ids
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))

    resumed = store.read_events(run_id, after_id=ids[1])  # the client's Last-Event-ID
    assert [(k, d) for _i, k, d in resumed] == [("step.delta", {"n": n}) for n in (2, 3, 4)]
    assert store.read_events(run_id, after_id=ids[-1]) == []
    assert len(store.read_events(run_id, count=2)) == 2
    assert store.read_events("no-such-run") == []
    with pytest.raises(ValueError, match="not an event id"):
        store.read_events(run_id, after_id="1-0; DROP")


def test_a_blocking_read_waits_for_the_next_event(store: RunStore) -> None:
    run_id = new_run(store)
    last = store.read_events(run_id)[-1][0]
    t0 = time.monotonic()
    assert store.read_events(run_id, after_id=last, block_ms=50) == []
    assert time.monotonic() - t0 < 2

    timer = threading.Timer(0.1, lambda: store.append_event(run_id, "run.note", {"x": 1}))
    timer.start()
    try:
        got = store.read_events(run_id, after_id=last, block_ms=5000)
    finally:
        timer.join()
    assert [(k, d) for _i, k, d in got] == [("run.note", {"x": 1})]


def test_the_stream_is_capped(client: redis.Redis, prefix: str, clock: FakeClock) -> None:
    store = RunStore(client, prefix=prefix, events_maxlen=100, clock=clock)
    run_id = new_run(store)
    for n in range(1000):
        store.append_event(run_id, "step.delta", {"n": n})
    assert 100 <= client.xlen(f"{prefix}run:{run_id}:events") < 1000


# -- listing -------------------------------------------------------------------------------------


def test_listing_pages_newest_first_and_shows_only_the_tenants_runs(
    store: RunStore, clock: FakeClock
) -> None:
    mine = []
    for n in range(7):
        mine.append(new_run(store, tenant="acme", run_id=f"a{n}"))
        new_run(store, tenant="globex", run_id=f"g{n}")
        clock.advance(1)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        runs, cursor = store.list_runs("acme", cursor=cursor, limit=3)
        seen += [r.id for r in runs]
        pages += 1
        if cursor is None:
            break
    assert seen == mine[::-1] and pages == 3
    assert all(r.tenant == "acme" for r in store.list_runs("acme", limit=100)[0])
    assert {r.id for r in store.list_runs("globex", limit=100)[0]} == {f"g{n}" for n in range(7)}
    assert store.list_runs("initech") == ([], None)
    assert store.get("a0", tenant="globex") is None
    assert store.get("a0", tenant="acme") is not None


def test_listing_runs_created_at_the_same_instant(store: RunStore) -> None:
    created = {new_run(store, run_id=f"r{n:02d}") for n in range(25)}
    seen: list[str] = []
    cursor = None
    while True:
        runs, cursor = store.list_runs("acme", cursor=cursor, limit=4)
        seen += [r.id for r in runs]
        if cursor is None:
            break
    assert len(seen) == 25 and set(seen) == created


def test_a_run_created_between_pages_does_not_shift_them(store: RunStore, clock: FakeClock) -> None:
    for n in range(4):
        new_run(store, run_id=f"r{n}")
        clock.advance(1)
    first, cursor = store.list_runs("acme", limit=2)
    new_run(store, run_id="late")
    second, cursor = store.list_runs("acme", cursor=cursor, limit=2)
    assert [r.id for r in first + second] == ["r3", "r2", "r1", "r0"]


def test_listing_filters_by_status_and_program(store: RunStore, clock: FakeClock) -> None:
    a = new_run(store, program="extract@1")
    b = new_run(store, program="extract@2")
    c = new_run(store, program="summarize@1")
    claim = store.claim(b, "w")
    assert claim is not None
    store.finish(claim, status="succeeded", output=1)

    def ids(**kw: object) -> set[str]:
        return {r.id for r in store.list_runs("acme", limit=50, **kw)[0]}  # type: ignore[arg-type]

    assert ids(status="queued") == {a, c}
    assert ids(status="succeeded") == {b}
    assert ids(program="extract") == {a, b}
    assert ids(program="extract@2") == {b}
    assert ids(program="extract@2", status="queued") == set()
    with pytest.raises(ValueError, match="status must be one of"):
        store.list_runs("acme", status="done")
    with pytest.raises(ValueError, match="limit must be in"):
        store.list_runs("acme", limit=0)


def test_a_foreign_or_broken_cursor_is_refused(store: RunStore) -> None:
    for cursor in ("garbage!", "bm90IGpzb24", "WzEsMiwzXQ", "WyJ4IiwgInkiXQ"):
        with pytest.raises(InvalidCursor, match="not a cursor") as info:
            store.list_runs("acme", cursor=cursor)
        assert info.value.to_dict()["field"] == "query:cursor"
        assert info.value.code == "run.invalid_cursor"


def test_expired_runs_leave_the_index(store: RunStore, client: redis.Redis, prefix: str) -> None:
    keep = new_run(store)
    gone = new_run(store)
    client.delete(f"{prefix}run:{gone}")  # what the result TTL does
    assert [r.id for r in store.list_runs("acme")[0]] == [keep]
    assert client.zrange(f"{prefix}tenant:acme:runs", 0, -1) == [keep.encode()]


# -- batches -------------------------------------------------------------------------------------


def test_batch_lines_count_once_and_always_add_up(
    store: RunStore, client: redis.Redis, prefix: str, clock: FakeClock
) -> None:
    lines = [new_run(store, parent="b1") for _ in range(6)]
    for n, run_id in enumerate(lines[:4]):
        claim = store.claim(run_id, "w")
        assert claim is not None
        store.finish(claim, status="succeeded" if n % 2 == 0 else "failed")
        store.finish(claim, status="succeeded")  # a duplicate delivery's finish: ignored
    store.request_cancel(lines[4])  # queued → cancelled, counted as failed
    assert store.mark_batch_line("b1", lines[5], "expired") is True
    assert store.mark_batch_line("b1", lines[5], "succeeded") is False
    assert store.mark_batch_line("b1", lines[0], "failed") is False  # already counted by finish

    progress = store.batch_progress("b1")
    assert (progress.completed, progress.failed, progress.done) == (2, 4, 6)
    assert client.hlen(f"{prefix}batch:b1:lines") == progress.done
    assert store.batch_progress("no-such-batch").done == 0
    with pytest.raises(ValueError, match="a batch line ends"):
        store.mark_batch_line("b1", "x", "running")


def test_duplicate_marks_racing_count_once(
    store: RunStore, client: redis.Redis, prefix: str
) -> None:
    barrier = threading.Barrier(6)
    counted: list[bool] = []

    def mark(n: int) -> None:
        barrier.wait()
        for line in range(20):
            counted.append(
                store.mark_batch_line("b2", f"line{line}", "succeeded" if n % 2 else "failed")
            )

    threads = [threading.Thread(target=mark, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counted.count(True) == 20
    progress = store.batch_progress("b2")
    assert progress.done == 20 == client.hlen(f"{prefix}batch:b2:lines")


def test_reaper_failures_count_as_failed_lines(store: RunStore, clock: FakeClock) -> None:
    run_id = new_run(store, parent="b3")
    for _ in range(3):
        assert store.claim(run_id, "w") is not None
        clock.advance(31)
        store.reap()
    assert store.batch_progress("b3") == sgflow.store.BatchProgress(completed=0, failed=1)
