"""The event hub: one task per API process follows every run someone is watching.

A client following a run (``GET /v1/runs/{id}/events``) or a request waiting for one
(``POST /v1/extract``) subscribes here instead of blocking in Redis itself. The hub keeps one
``XREAD BLOCK`` going on a connection of its own, over the event streams of every run that
has a subscriber (``XREAD`` takes many streams, each with its own last id), and copies each
event into the bounded queue of every subscriber of that run. So 1,000 open streams cost one
blocked Redis connection and one task, not 1,000 of either, and no thread waits.

Joining without missing or repeating an event. A subscriber asks for the events after its
``after`` id (the client's ``Last-Event-ID``). It first reads that history itself with
``XRANGE`` on the ordinary connections, then registers with the hub, all at once (no await
in between): a run new to the hub is followed from the last id the subscriber has read, so
everything after it comes through the hub; a run the hub already follows may be ahead of
that, and the subscriber reads the gap up to the hub's cursor at registration with one more
``XRANGE``; whatever the queue then brings at or below what it has delivered is skipped (ids
only grow).

Refreshing the set of runs. The hub rebuilds its ``XREAD`` from the current subscriptions on
every pass. When a run new to it arrives while it is blocked, it is woken through a stream
of its own (``hub:<id>``, :meth:`~sgflow.store.AsyncRunStore.nudge`), read in the same
``XREAD`` from the last id it saw, so no wake-up is lost. A run whose last subscriber left
is dropped from the next pass.

Slow clients. Each subscriber's queue holds :data:`QUEUE_SIZE` events; when it is full the
subscriber is dropped (its stream ends after what it has) and its client reconnects with
``Last-Event-ID`` (``sgflow.client`` does), so a slow client can never grow memory. If Redis
fails, the hub retries with a backoff; subscribers keep their place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType

import redis
import redis.asyncio

from sgflow.store import AsyncRunStore, Event

__all__ = ["BLOCK_MS", "COALESCE_S", "QUEUE_SIZE", "EventHub", "Subscription", "event_id_key"]

log = logging.getLogger("sgflow.service.events")

BLOCK_MS = 5_000  # one XREAD waits at most this long before the hub looks again
# after a read that found events, wait this long before the next one, so that a busy hub
# reads many events per XREAD instead of sending its whole key list for each few events
COALESCE_S = 0.02
QUEUE_SIZE = 1_000  # events a subscriber may have waiting before it is dropped
_COUNT = 200  # events per run per XREAD
_HISTORY_PAGE = 200  # events per XRANGE while catching up


def event_id_key(event_id: str) -> tuple[int, int]:
    """A stream id as a sortable ``(ms, seq)`` (``"5"`` is ``(5, 0)``)."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


class Subscription:
    """One subscriber's view of a run's events: async-iterate it for :data:`Event`\\ s after
    ``after``, in order, with no gap and no repeat. Iteration ends when the hub dropped the
    subscriber (``dropped`` is then True: it fell :data:`QUEUE_SIZE` events behind, or the
    hub closed); the caller decides when to stop otherwise (e.g. after ``run.finished``).
    Use it as an async context manager: leaving it unsubscribes."""

    def __init__(self, hub: EventHub, run_id: str, after: str) -> None:
        self.hub = hub
        self.run_id = run_id
        self.last = event_id_key(after)
        self.dropped = False
        # one slot more than QUEUE_SIZE, for the None that tells the reader it was dropped
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(hub.queue_size + 1)
        self._backlog: deque[Event] = deque()
        self._registered = False

    async def __aenter__(self) -> Subscription:
        await self.hub._join(self)
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.hub._leave(self)

    @property
    def last_id(self) -> str:
        """The id of the last event this subscription has read (``after`` before the
        first); once :meth:`get` has handed out the history, the last one delivered."""
        return _id_of(self.last)

    def push(self, event: Event) -> None:
        """Called by the hub: queue ``event``, or drop this subscriber when it is full."""
        if self.dropped:
            return
        if self._queue.qsize() >= self.hub.queue_size:
            self.dropped = True
            self.hub._leave(self)
            self._queue.put_nowait(None)
            return
        self._queue.put_nowait(event)

    def close(self) -> None:
        """End the iteration (the hub is closing)."""
        if not self.dropped:
            self.dropped = True
            self._queue.put_nowait(None)

    async def get(self) -> Event | None:
        """The next event (waiting for it), or None once dropped."""
        while True:
            if self._backlog:
                return self._backlog.popleft()
            event = await self._queue.get()
            if event is None:
                self._queue.put_nowait(None)  # every later call answers None too
                return None
            key = event_id_key(event[0])
            if key > self.last:
                self.last = key
                return event

    async def next(self, timeout_s: float) -> Event | None:
        """:meth:`get`, or None after ``timeout_s`` seconds without an event."""
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.get(), timeout_s)
        return None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while (event := await self.get()) is not None:
            yield event


@dataclass
class _Followed:
    cursor: str
    subscribers: set[Subscription] = field(default_factory=set)


class EventHub:
    """Follows the event streams of every run that has a subscriber, for one API process.

    ``store`` reads history and sends wake-ups on its (pooled) client; the hub's own blocking
    reads go through ``blocking_client``, a client it owns and closes, with one connection
    whose socket timeout exceeds ``block_ms`` (default :data:`BLOCK_MS`). ``queue_size``
    (default :data:`QUEUE_SIZE`) events may wait per subscriber. After a read that found
    events the hub waits ``coalesce_s`` (default :data:`COALESCE_S`, 20 ms) before the next,
    so a busy hub batches: events reach subscribers at most that much later. The hub's task
    starts with the first subscription and stops at :meth:`close`.
    """

    def __init__(
        self,
        store: AsyncRunStore,
        blocking_client: redis.asyncio.Redis,
        *,
        block_ms: int = BLOCK_MS,
        queue_size: int = QUEUE_SIZE,
        coalesce_s: float = COALESCE_S,
    ) -> None:
        self.store = store
        self.reader = store.on(blocking_client)
        self._blocking_client = blocking_client
        self.block_ms = block_ms
        self.queue_size = queue_size
        self.coalesce_s = coalesce_s
        self.id = uuid.uuid4().hex
        self._runs: dict[str, _Followed] = {}
        self._cursor = "0-0"
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None
        self._reading = False
        self._closed = False
        self._nudges: set[asyncio.Task[None]] = set()

    @property
    def subscriber_count(self) -> int:
        """Subscribers now, over every run."""
        return sum(len(f.subscribers) for f in self._runs.values())

    @property
    def run_count(self) -> int:
        """Runs followed now (each one stream in the hub's ``XREAD``)."""
        return len(self._runs)

    def subscribe(self, run_id: str, after: str = "0-0") -> Subscription:
        """A subscription to ``run_id``'s events after ``after`` (an event id, default
        ``0-0``: all); enter it with ``async with``."""
        return Subscription(self, run_id, after)

    async def close(self) -> None:
        """Stop the task, end every subscription, close the blocking client."""
        self._closed = True
        for followed in list(self._runs.values()):
            for sub in list(followed.subscribers):
                sub.close()
        self._runs.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._blocking_client.aclose()

    # -- subscribers --------------------------------------------------------------------------

    async def _join(self, sub: Subscription) -> None:
        if self._closed:
            raise RuntimeError("the event hub is closed")
        history = await self._history(sub.run_id, sub.last)
        seen = event_id_key(history[-1][0]) if history else sub.last
        # from here to the registration, nothing awaits: no event can slip between
        followed = self._runs.get(sub.run_id)
        new = followed is None
        if followed is None:
            followed = self._runs[sub.run_id] = _Followed(cursor=_id_of(seen))
        followed.subscribers.add(sub)
        sub._registered = True
        if event_id_key(followed.cursor) > seen:  # the hub is ahead: read the gap
            history += await self._history(sub.run_id, seen, until=followed.cursor)
        sub._backlog.extend(history)
        if history:
            sub.last = event_id_key(history[-1][0])
        self._ensure_running()
        if new:
            self._wake()

    def _leave(self, sub: Subscription) -> None:
        if not sub._registered:
            return
        sub._registered = False
        followed = self._runs.get(sub.run_id)
        if followed is None:
            return
        followed.subscribers.discard(sub)
        if not followed.subscribers:
            del self._runs[sub.run_id]

    async def _history(
        self, run_id: str, after: tuple[int, int], *, until: str | None = None
    ) -> list[Event]:
        out: list[Event] = []
        cursor = _id_of(after)
        stop = event_id_key(until) if until is not None else None
        while True:
            page = await self.store.read_events(run_id, cursor, count=_HISTORY_PAGE)
            for event in page:
                if stop is not None and event_id_key(event[0]) > stop:
                    return out
                out.append(event)
            if len(page) < _HISTORY_PAGE:
                return out
            cursor = page[-1][0]

    # -- the task -----------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._idle = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="event-hub")

    def _wake(self) -> None:
        if self._idle is not None:
            self._idle.set()
        if self._reading:  # blocked in XREAD on a set without the new run
            task = asyncio.get_running_loop().create_task(self._nudge())
            self._nudges.add(task)
            task.add_done_callback(self._nudges.discard)

    async def _nudge(self) -> None:
        try:
            await self.store.nudge(self.id)
        except redis.RedisError as exc:  # the hub looks again within block_ms anyway
            log.warning("waking the event hub failed: %s", exc)

    async def _loop(self) -> None:
        backoff = 0.5
        assert self._idle is not None
        while not self._closed:
            if not self._runs:
                self._idle.clear()
                await self._idle.wait()
                continue
            cursors = {run_id: f.cursor for run_id, f in self._runs.items()}
            self._reading = True
            try:
                found, self._cursor = await self.reader.wait_events(
                    cursors,
                    hub=self.id,
                    hub_cursor=self._cursor,
                    block_ms=self.block_ms,
                    count=_COUNT,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away, or a bug: keep subscribers, try again
                log.warning("the event hub's read failed (retrying in %.1fs): %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            finally:
                self._reading = False
            backoff = 0.5
            for run_id, events in found.items():
                followed = self._runs.get(run_id)
                if followed is None:  # its last subscriber left during the read
                    continue
                for event in events:
                    for sub in list(followed.subscribers):
                        sub.push(event)
                followed.cursor = events[-1][0]
            if found:
                await asyncio.sleep(self.coalesce_s)


def _id_of(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"
