"""Which engine a worker sends a run to.

The worker's URLs come from :attr:`sgflow.settings.Settings.worker_engine_urls`: the router
(``SGFLOW_ROUTER_URL``) when there is one, else the engines (``SGFLOW_ENGINE_URLS``).

- One URL (an engine, or sglang-router in front of several): every run goes there. This is
  the production shape: the router's cache-aware policy puts runs that share a prefix on the
  replica that has it cached.
- Several URLs and no router: each run has its own order of the engines, by rendezvous
  hashing of its run id. The first attempt goes to the first engine of that order, each
  engine retry (``engine.unavailable``) to the next, so a dead engine costs a run one retry,
  a run resumed after a crash goes back to the engine that holds its prefix, and runs spread
  evenly. There is no prefix affinity across runs: that is the router's job.

Endpoints are built lazily, once per URL (building one asks the engine what it is and which
model it serves; a failed build is retried on the next use).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sgflow.execution import endpoint_for

__all__ = ["EnginePool"]


class EnginePool:
    """``urls`` (at least one) and ``factory`` (default :func:`endpoint_for`: the backend of
    whatever kind of engine answers there), which builds the endpoint of one URL. Raises
    ``ValueError`` for an empty list."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        factory: Callable[[str], Any] = endpoint_for,
    ) -> None:
        if not urls:
            raise ValueError("an engine pool needs at least one URL")
        self.urls = list(dict.fromkeys(urls))
        self._factory = factory
        self._endpoints: dict[str, Any] = {}
        self._lock = threading.Lock()

    def order(self, key: str) -> list[str]:
        """The engines in the order ``key`` (a run id) tries them: highest rendezvous
        weight first, so removing one engine only moves the runs that were on it."""
        if len(self.urls) == 1:
            return list(self.urls)
        return sorted(self.urls, key=lambda url: _weight(url, key), reverse=True)

    def pick(self, key: str, retry: int = 0) -> str:
        """The URL for attempt ``retry`` (0 = first try) of ``key``."""
        order = self.order(key)
        return order[retry % len(order)]

    def endpoint(self, url: str) -> Any:
        """The endpoint of ``url``, built on first use; raises what building it raises
        (an unreachable engine), and the next call tries again."""
        with self._lock:
            found = self._endpoints.get(url)
        if found is not None:
            return found
        built = self._factory(url)  # outside the lock: it makes an HTTP request
        with self._lock:
            return self._endpoints.setdefault(url, built)


def _weight(url: str, key: str) -> int:
    digest = hashlib.blake2b(f"{url}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
