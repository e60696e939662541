"""Aggregate counters for ``/metrics``, kept in Redis so every process adds to the same sums.

Two hashes under the store's prefix (default ``sgflow:``):

- ``<prefix>metrics:runs``: ``submitted`` (runs the API created) and ``finished:<status>``
  (runs that reached ``succeeded``, ``failed`` or ``cancelled``, counted by whoever finished
  them: a worker, the reaper, a claim that gave up, or a cancel of a queued run).
- ``<prefix>metrics:steps``: top-level steps the workers finished: ``count``,
  ``latency_sum`` (seconds), ``prompt_tokens``, ``cached_tokens``, ``completion_tokens``.

The counters are incremented right after the run store's atomic write, not inside it: a
process that dies between the two under-counts by one. They never expire and only grow, like
Prometheus counters (``rate()`` handles a reset if someone deletes the hashes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from sgflow.workers.records import as_str

__all__ = ["STEP_FIELDS", "Stats"]

STEP_FIELDS = ("count", "latency_sum", "prompt_tokens", "cached_tokens", "completion_tokens")


class Stats:
    """The counters of one deployment (``prefix`` default ``sgflow:``), on any sync client."""

    def __init__(self, redis_client: redis.Redis, *, prefix: str = "sgflow:") -> None:
        self.redis = redis_client
        self.runs_key = f"{prefix}metrics:runs"
        self.steps_key = f"{prefix}metrics:steps"

    def run_submitted(self) -> None:
        self.redis.hincrby(self.runs_key, "submitted", 1)

    def run_finished(self, status: str) -> None:
        self.redis.hincrby(self.runs_key, f"finished:{status}", 1)

    def step_finished(self, latency_s: float | None, usage: Mapping[str, Any]) -> None:
        """Add one finished step: its latency (skipped when unknown) and token usage."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(self.steps_key, "count", 1)
        if latency_s is not None:
            pipe.hincrbyfloat(self.steps_key, "latency_sum", float(latency_s))
        for field in ("prompt_tokens", "cached_tokens", "completion_tokens"):
            value = usage.get(field)
            if isinstance(value, int) and value > 0:
                pipe.hincrby(self.steps_key, field, value)
        pipe.execute()

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        """``(runs, steps)``: every field of both hashes as floats (absent fields are 0)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.runs_key)
        pipe.hgetall(self.steps_key)
        runs, steps = pipe.execute()
        return _floats(runs), {f: _floats(steps).get(f, 0.0) for f in STEP_FIELDS}


def _floats(raw: Mapping[Any, Any]) -> dict[str, float]:
    return {as_str(k): float(as_str(v)) for k, v in raw.items()}
