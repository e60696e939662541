"""The event hub against a real Redis, in one event loop: subscribers joining while events
are written get every event once and in order, a slow subscriber is dropped, leaving frees
the run, and many runs share one blocking read."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio

from sgflow.service.events import EventHub
from sgflow.store import AsyncRunStore, RunStore
from tests.service.conftest import REDIS_URL


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    value = f"sgflow-test-hub-{uuid.uuid4().hex[:10]}:"
    yield value
    for key in redis_client.scan_iter(match=f"{value}*", count=1000):
        redis_client.delete(key)


async def hub_for(prefix: str, **kw: int) -> tuple[EventHub, AsyncRunStore]:
    pool = redis.asyncio.BlockingConnectionPool.from_url(REDIS_URL, max_connections=32)
    store = AsyncRunStore(redis.asyncio.Redis(connection_pool=pool), prefix=prefix)
    blocking = redis.asyncio.Redis.from_url(REDIS_URL, socket_timeout=30)
    return EventHub(store, blocking, **kw), store


def new_run(sync: RunStore) -> str:
    run_id = uuid.uuid4().hex
    sync.create(run_id=run_id, tenant="t", program="p@1", program_hash="h", inputs={})
    return run_id


async def collect(hub: EventHub, run_id: str, after: str, until: int) -> list[int]:
    """The ``n`` of every ``note`` event after ``after``, up to ``n == until``."""
    seen: list[int] = []
    async with hub.subscribe(run_id, after) as sub:
        async for _, kind, data in sub:
            if kind == "note":
                seen.append(data["n"])
                if data["n"] == until:
                    return seen
    raise AssertionError(f"dropped after {seen[-3:]}")


def test_subscribers_joining_while_events_are_written_miss_nothing(
    redis_client: redis.Redis, prefix: str
) -> None:
    sync = RunStore(redis_client, prefix=prefix)
    runs = [new_run(sync) for _ in range(3)]
    total = 300

    async def writer() -> None:
        rng = random.Random(7)
        for n in range(total):
            for run_id in runs:
                await asyncio.to_thread(sync.append_event, run_id, "note", {"n": n})
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() / 200)

    async def main() -> list[list[int]]:
        hub, store = await hub_for(prefix)
        try:
            write = asyncio.create_task(writer())
            readers = []
            for i in range(30):  # join at different moments, some before any note
                await asyncio.sleep(random.Random(i).random() / 50)
                readers.append(asyncio.create_task(collect(hub, runs[i % 3], "0-0", total - 1)))
            results = await asyncio.wait_for(asyncio.gather(*readers), 60)
            await write
            assert hub.subscriber_count == 0 and hub.run_count == 0
            return list(results)
        finally:
            await hub.close()
            await store.redis.aclose()

    for seen in asyncio.run(main()):
        assert seen == list(range(total))


def test_a_subscriber_resumes_after_its_last_event_id(
    redis_client: redis.Redis, prefix: str
) -> None:
    sync = RunStore(redis_client, prefix=prefix)
    run_id = new_run(sync)
    ids = [sync.append_event(run_id, "note", {"n": n}) for n in range(10)]

    async def main() -> list[int]:
        hub, store = await hub_for(prefix)
        try:
            task = asyncio.create_task(collect(hub, run_id, ids[4], 12))
            while hub.subscriber_count == 0:
                await asyncio.sleep(0.01)
            for n in (10, 11, 12):
                await asyncio.to_thread(sync.append_event, run_id, "note", {"n": n})
            return await asyncio.wait_for(task, 30)
        finally:
            await hub.close()
            await store.redis.aclose()

    assert asyncio.run(main()) == [5, 6, 7, 8, 9, 10, 11, 12]


def test_a_slow_subscriber_is_dropped_and_the_run_left(
    redis_client: redis.Redis, prefix: str
) -> None:
    sync = RunStore(redis_client, prefix=prefix)
    run_id = new_run(sync)

    async def main() -> tuple[bool, int, int]:
        hub, store = await hub_for(prefix, queue_size=20)
        try:
            async with hub.subscribe(run_id) as sub:
                first = await sub.get()  # run.queued: joined, now reads nothing
                assert first is not None and first[1] == "run.queued"
                for n in range(100):
                    await asyncio.to_thread(sync.append_event, run_id, "note", {"n": n})
                while not sub.dropped:
                    await asyncio.sleep(0.01)
                got = [e async for e in sub]  # what it had queued, then the end
                return sub.dropped, len(got), hub.subscriber_count
        finally:
            await hub.close()
            await store.redis.aclose()

    dropped, got, left = asyncio.run(main())
    assert dropped and got == 20 and left == 0


def test_many_runs_share_one_read_and_leaving_frees_them(
    redis_client: redis.Redis, prefix: str
) -> None:
    sync = RunStore(redis_client, prefix=prefix)
    runs = [new_run(sync) for _ in range(150)]

    async def follow(hub: EventHub, run_id: str, started: asyncio.Event) -> str:
        async with hub.subscribe(run_id) as sub:
            async for _, kind, _ in sub:
                if kind == "run.queued":
                    started.set()
                if kind == "run.finished":
                    return run_id
        raise AssertionError("dropped")

    async def main() -> tuple[int, int, set[str]]:
        hub, store = await hub_for(prefix)
        try:
            started = [asyncio.Event() for _ in runs]
            tasks = [
                asyncio.create_task(follow(hub, r, s)) for r, s in zip(runs, started, strict=True)
            ]
            await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), 30)
            followed = hub.run_count
            for run_id in runs:
                await store.request_cancel(run_id)  # ends with run.finished
            done = set(await asyncio.wait_for(asyncio.gather(*tasks), 30))
            return followed, hub.run_count, done
        finally:
            await hub.close()
            await store.redis.aclose()

    followed, after, done = asyncio.run(main())
    assert followed == 150 and after == 0 and done == set(runs)


def test_a_subscriber_whose_history_is_older_than_the_hub_reads_the_gap(
    redis_client: redis.Redis, prefix: str
) -> None:
    """Deterministically the race the test above meets by chance: B's history read ends
    before the hub, which already follows the run for A, reads on past it."""
    sync = RunStore(redis_client, prefix=prefix)
    run_id = new_run(sync)

    async def main() -> list[int]:
        hub, store = await hub_for(prefix)
        real_read = store.read_events
        hold = asyncio.Event()
        armed = True

        async def stale_read(*args: object, **kw: object) -> list:  # type: ignore[type-arg]
            nonlocal armed
            page = await real_read(*args, **kw)  # type: ignore[arg-type]
            if armed:
                armed = False
                await hold.wait()  # the answer is old by the time it arrives
            return page

        try:
            a_seen: list[int] = []

            async def a_reads() -> None:
                async with hub.subscribe(run_id) as sub:
                    async for _, kind, data in sub:
                        if kind == "note":
                            a_seen.append(data["n"])

            a = asyncio.create_task(a_reads())
            for n in range(5):
                await asyncio.to_thread(sync.append_event, run_id, "note", {"n": n})
            while len(a_seen) < 5:
                await asyncio.sleep(0.01)
            store.read_events = stale_read  # type: ignore[method-assign]
            b = asyncio.create_task(collect(hub, run_id, "0-0", 12))
            while armed:
                await asyncio.sleep(0.01)
            for n in range(5, 10):
                await asyncio.to_thread(sync.append_event, run_id, "note", {"n": n})
            while len(a_seen) < 10:  # the hub's cursor is now past B's history
                await asyncio.sleep(0.01)
            hold.set()
            while hub.subscriber_count < 2:
                await asyncio.sleep(0.01)
            for n in range(10, 13):
                await asyncio.to_thread(sync.append_event, run_id, "note", {"n": n})
            seen = await asyncio.wait_for(b, 30)
            a.cancel()
            return seen
        finally:
            await hub.close()
            await store.redis.aclose()

    assert asyncio.run(main()) == list(range(13))
