"""Aggregate counters for ``/metrics``, kept in Redis so every process adds to the same sums.

Two hashes under the store's prefix (default ``sgflow:``):

- ``<prefix>metrics:runs``: ``submitted`` (runs the API created) and ``finished:<status>``
  (runs that reached ``succeeded``, ``failed`` or ``cancelled``, counted by whoever finished
  them: a worker, the reaper, a claim that gave up, or a cancel of a queued run).
- ``<prefix>metrics:steps``: top-level steps the workers finished: ``count``,
  ``latency_sum`` (seconds), ``prompt_tokens``, ``cached_tokens``, ``completion_tokens``.
- ``<prefix>metrics:step_latency``: the step-latency histogram: one field per bucket,
  ``le=<bound>`` for :data:`LATENCY_BUCKETS` and ``le=+Inf``, each counting the steps whose
  latency fell in that bucket only (the exporter makes them cumulative), plus ``sum``.
  One ``HINCRBY`` per step, whatever the number of buckets.

The counters are incremented right after the run store's atomic write, not inside it: a
process that dies between the two under-counts by one. They never expire and only grow, like
Prometheus counters (``rate()`` handles a reset if someone deletes the hashes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from sgflow.workers.records import as_str

__all__ = ["LATENCY_BUCKETS", "STEP_FIELDS", "Stats"]

STEP_FIELDS = ("count", "latency_sum", "prompt_tokens", "cached_tokens", "completion_tokens")
# upper bounds (seconds) of the step-latency histogram's buckets; +Inf is added
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Stats:
    """The counters of one deployment (``prefix`` default ``sgflow:``), on any sync client."""

    def __init__(self, redis_client: redis.Redis, *, prefix: str = "sgflow:") -> None:
        self.redis = redis_client
        self.runs_key = f"{prefix}metrics:runs"
        self.steps_key = f"{prefix}metrics:steps"
        self.latency_key = f"{prefix}metrics:step_latency"

    def run_submitted(self, n: int = 1) -> None:
        """Count ``n`` (default 1) runs created by the API."""
        self.redis.hincrby(self.runs_key, "submitted", n)

    def run_finished(self, status: str) -> None:
        self.redis.hincrby(self.runs_key, f"finished:{status}", 1)

    def step_finished(self, latency_s: float | None, usage: Mapping[str, Any]) -> None:
        """Add one finished step: its latency (skipped when unknown) and token usage."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(self.steps_key, "count", 1)
        if latency_s is not None:
            latency = float(latency_s)
            pipe.hincrbyfloat(self.steps_key, "latency_sum", latency)
            pipe.hincrby(self.latency_key, _bucket(latency), 1)
            pipe.hincrbyfloat(self.latency_key, "sum", latency)
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

    def latency_histogram(self) -> tuple[list[tuple[str, float]], float]:
        """``([(le, cumulative count)] ending with "+Inf", sum)`` of the step latencies, as
        Prometheus histograms are exported."""
        raw = _floats(self.redis.hgetall(self.latency_key))
        buckets: list[tuple[str, float]] = []
        total = 0.0
        for bound in [*(_le(b) for b in LATENCY_BUCKETS), "+Inf"]:
            total += raw.get(f"le={bound}", 0.0)
            buckets.append((bound, total))
        return buckets, raw.get("sum", 0.0)


def _le(bound: float) -> str:
    return repr(float(bound))


def _bucket(latency: float) -> str:
    for bound in LATENCY_BUCKETS:
        if latency <= bound:
            return f"le={_le(bound)}"
    return "le=+Inf"


def _floats(raw: Mapping[Any, Any]) -> dict[str, float]:
    return {as_str(k): float(as_str(v)) for k, v in raw.items()}
