"""CPU-bound work off the event loop: the static checker, schema validation, hashing and
parsing large bodies run in a bounded pool of threads, so one heavy request cannot stall the
loop that answers every other one.

The pool is per event loop (an app may be served by more than one, e.g. under test
clients) and holds :data:`CPU_THREADS` threads: more would not run Python faster (the GIL),
they would only let more heavy requests start at once.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

__all__ = ["CPU_THREADS", "run_cpu"]

T = TypeVar("T")

CPU_THREADS = 4
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


async def run_cpu(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread of this loop's CPU pool; returns or raises what it
    does. Waits for a free thread when :data:`CPU_THREADS` are busy."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(CPU_THREADS)
    return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)
