"""Which workers are alive: each worker's reaper loop sets ``workers:<worker id>`` with a
TTL of a few reaper intervals; ``/readyz`` looks for any such key.

Operations (see :mod:`sgflow.store.ops`).
"""

from __future__ import annotations

from sgflow.store.ops import Op, call
from sgflow.store.records import Keys, as_str

__all__ = ["alive_workers", "announce", "withdraw"]


def announce(keys: Keys, worker_id: str, *, ttl_s: float, now: float) -> Op[None]:
    """Mark ``worker_id`` alive for ``ttl_s`` seconds (the value is ``now``, epoch)."""
    yield call("set", keys.worker(worker_id), repr(now), px=max(1, int(ttl_s * 1000)))


def withdraw(keys: Keys, worker_id: str) -> Op[None]:
    """``worker_id`` is stopping: it no longer counts as alive (at once, not at its TTL)."""
    yield call("delete", keys.worker(worker_id))


def alive_workers(keys: Keys, *, limit: int = 20) -> Op[list[str]]:
    """Up to ``limit`` (default 20) keys of live workers (a ``SCAN``; an empty list when
    none announced itself within its TTL)."""
    found: list[str] = []
    cursor: int | str = 0
    while True:
        cursor, batch = yield call("scan", cursor, match=keys.worker("*"), count=1000)
        for key in batch:
            found.append(as_str(key))
            if len(found) >= limit:
                return found
        if int(cursor) == 0:
            return found
