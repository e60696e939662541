"""Aggregate counters for ``/metrics``, kept in Redis so every process adds to the same sums.

Three hashes under the store's prefix (default ``sgflow:``):

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

Operations (see :mod:`sgflow.store.ops`); :class:`MetricsSnapshot` is what ``/metrics``
reads in one round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sgflow.store.ops import Op, Pipe, call
from sgflow.store.records import Keys, as_str

__all__ = [
    "LATENCY_BUCKETS",
    "STEP_FIELDS",
    "MetricsSnapshot",
    "latency_histogram",
    "read",
    "run_finished",
    "run_submitted",
    "snapshot",
    "step_finished",
]

STEP_FIELDS = ("count", "latency_sum", "prompt_tokens", "cached_tokens", "completion_tokens")
# upper bounds (seconds) of the step-latency histogram's buckets; +Inf is added
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything ``/metrics`` shows of the store: the ``queued`` and ``running`` gauges,
    the run and step counters (absent fields are 0), the step-latency histogram
    (``[(le, cumulative count)]`` ending with ``+Inf``) and its sum."""

    queued: int
    running: int
    runs: dict[str, float]
    steps: dict[str, float]
    latency_buckets: list[tuple[str, float]]
    latency_sum: float


def run_submitted(keys: Keys, n: int = 1) -> Op[None]:
    """Count ``n`` (default 1) runs created by the API."""
    yield call("hincrby", keys.metrics_runs, "submitted", n)


def run_finished(keys: Keys, status: str) -> Op[None]:
    yield call("hincrby", keys.metrics_runs, f"finished:{status}", 1)


def step_finished(keys: Keys, latency_s: float | None, usage: Mapping[str, Any]) -> Op[None]:
    """Add one finished step: its latency (skipped when unknown) and token usage."""
    steps = [call("hincrby", keys.metrics_steps, "count", 1)]
    if latency_s is not None:
        latency = float(latency_s)
        steps += [
            call("hincrbyfloat", keys.metrics_steps, "latency_sum", latency),
            call("hincrby", keys.metrics_latency, _bucket(latency), 1),
            call("hincrbyfloat", keys.metrics_latency, "sum", latency),
        ]
    for name in ("prompt_tokens", "cached_tokens", "completion_tokens"):
        value = usage.get(name)
        if isinstance(value, int) and value > 0:
            steps.append(call("hincrby", keys.metrics_steps, name, value))
    yield Pipe(steps)


def read(keys: Keys) -> Op[tuple[dict[str, float], dict[str, float]]]:
    """``(runs, steps)``: every field of both hashes as floats (absent fields are 0)."""
    runs, steps = yield Pipe(
        [call("hgetall", keys.metrics_runs), call("hgetall", keys.metrics_steps)]
    )
    return _floats(runs), {f: _floats(steps).get(f, 0.0) for f in STEP_FIELDS}


def latency_histogram(keys: Keys) -> Op[tuple[list[tuple[str, float]], float]]:
    """``([(le, cumulative count)] ending with "+Inf", sum)`` of the step latencies, as
    Prometheus histograms are exported."""
    raw = yield call("hgetall", keys.metrics_latency)
    return _cumulative(_floats(raw))


def snapshot(keys: Keys) -> Op[MetricsSnapshot]:
    """Every number of :class:`MetricsSnapshot`, in one round trip."""
    queued, running, runs, steps, latency = yield Pipe(
        [
            call("zcard", keys.queued),
            call("zcard", keys.running),
            call("hgetall", keys.metrics_runs),
            call("hgetall", keys.metrics_steps),
            call("hgetall", keys.metrics_latency),
        ]
    )
    buckets, total = _cumulative(_floats(latency))
    step_sums = _floats(steps)
    return MetricsSnapshot(
        queued=int(queued),
        running=int(running),
        runs=_floats(runs),
        steps={f: step_sums.get(f, 0.0) for f in STEP_FIELDS},
        latency_buckets=buckets,
        latency_sum=total,
    )


def _cumulative(raw: dict[str, float]) -> tuple[list[tuple[str, float]], float]:
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
