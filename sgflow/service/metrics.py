"""``GET /metrics``: Prometheus text, read at scrape time from Redis and the engines.

Nothing is counted in the API process, so every API replica answers the same numbers.
What each metric means:

- ``sgflow_runs_queued`` (gauge): runs waiting for a worker (the store's ``queued`` set).
- ``sgflow_runs_running`` (gauge): runs a worker holds (the ``running`` set; a run whose
  worker died stays here until the reaper requeues it).
- ``sgflow_runs_submitted_total`` (counter): runs the API created (idempotent replays
  excluded).
- ``sgflow_runs_finished_total{status}`` (counter): runs that ended ``succeeded``,
  ``failed`` or ``cancelled``, whoever ended them (worker, reaper, cancel).
- ``sgflow_steps_finished_total`` (counter): top-level steps the workers finished.
- ``sgflow_step_latency_seconds`` (histogram): their latencies, buckets ``le`` 0.1, 0.25,
  0.5, 1, 2.5, 5, 10, 30, 60, +Inf seconds (``_bucket``, ``_sum``, ``_count``; quantiles with
  ``histogram_quantile``). ``sgflow_step_latency_seconds_total`` (untyped, kept for existing
  dashboards) is the same sum as ``_sum``; it counts steps finished before the histogram
  existed too.
- ``sgflow_step_tokens_total{kind}`` (counter): ``prompt``, ``cached`` (prompt tokens served
  from the engine's prefix cache) and ``completion`` tokens of those steps.
- ``sgflow_engine_up{engine}`` (gauge): 1 if ``/server_info`` answered within the timeout.
- ``sgflow_engine_tokens_total{engine,kind}`` (counter): the engine's own ``prompt``,
  ``cache_hit`` and ``generated`` token counts (``internal_states``, summed over ranks).
- ``sgflow_engine_cached_token_ratio{engine}`` (gauge): ``cache_hit / prompt`` since the
  engine started (absent before its first prompt).

The run and step counters come from :mod:`sgflow.store.stats`; see there for how they can
under-count.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from sgflow.store import RunStore

__all__ = ["ENGINE_TIMEOUT_S", "SgflowCollector", "router"]

ENGINE_TIMEOUT_S = 1.0
_ENGINE_TOKENS = {"prompt": "prompt_tokens", "cache_hit": "cache_hit_tokens", "generated": "generated_tokens"}  # fmt: skip


class SgflowCollector(Collector):
    """Reads ``store``'s Redis and ``engine_urls``' ``/server_info`` on every collect
    (``engine_timeout_s`` default 1 per engine)."""

    def __init__(
        self,
        store: RunStore,
        engine_urls: Sequence[str] = (),
        *,
        engine_timeout_s: float = ENGINE_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.engine_urls = list(engine_urls)
        self.engine_timeout_s = engine_timeout_s

    def collect(self) -> Iterable[Metric]:
        yield from self._runs()
        yield from self._engines()

    def _runs(self) -> Iterator[Metric]:
        snap = self.store.stats.snapshot()
        runs, steps = snap.runs, snap.steps
        yield GaugeMetricFamily(
            "sgflow_runs_queued", "Runs waiting for a worker", value=snap.queued
        )
        yield GaugeMetricFamily("sgflow_runs_running", "Runs a worker holds", value=snap.running)
        yield CounterMetricFamily(
            "sgflow_runs_submitted", "Runs created by the API", value=runs.get("submitted", 0)
        )
        finished = CounterMetricFamily(
            "sgflow_runs_finished", "Runs that ended, by final status", labels=["status"]
        )
        for status in ("succeeded", "failed", "cancelled"):
            finished.add_metric([status], runs.get(f"finished:{status}", 0))
        yield finished
        yield CounterMetricFamily(
            "sgflow_steps_finished", "Top-level steps finished by workers", value=steps["count"]
        )
        yield HistogramMetricFamily(
            "sgflow_step_latency_seconds",
            "Latency of finished steps",
            buckets=snap.latency_buckets,
            sum_value=snap.latency_sum,
        )
        # the name before the histogram existed; a counter would clash with the histogram's
        yield UnknownMetricFamily(
            "sgflow_step_latency_seconds_total",
            "Sum of the latencies of finished steps (see sgflow_step_latency_seconds_sum)",
            value=steps["latency_sum"],
        )
        tokens = CounterMetricFamily(
            "sgflow_step_tokens", "Tokens of finished steps, by kind", labels=["kind"]
        )
        for kind in ("prompt", "cached", "completion"):
            tokens.add_metric([kind], steps[f"{kind}_tokens"])
        yield tokens

    def _engines(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("sgflow_engine_up", "/server_info answered", labels=["engine"])
        tokens = CounterMetricFamily(
            "sgflow_engine_tokens", "Engine token counts, by kind", labels=["engine", "kind"]
        )
        ratio = GaugeMetricFamily(
            "sgflow_engine_cached_token_ratio",
            "Prompt tokens served from the prefix cache / prompt tokens",
            labels=["engine"],
        )
        with httpx.Client(timeout=self.engine_timeout_s) as client:
            for url in self.engine_urls:
                sums = _engine_tokens(client, url)
                up.add_metric([url], 0 if sums is None else 1)
                if sums is None:
                    continue
                for kind, value in sums.items():
                    tokens.add_metric([url, kind], value)
                if sums["prompt"] > 0:
                    ratio.add_metric([url], sums["cache_hit"] / sums["prompt"])
        yield from (up, tokens, ratio)


def _engine_tokens(client: httpx.Client, url: str) -> dict[str, float] | None:
    """The engine's token counters summed over its ``internal_states``; ``None`` if it did
    not answer 200 with JSON in time."""
    try:
        response = client.get(f"{url}/server_info")
        info: Any = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    states = [s for s in info.get("internal_states") or [] if isinstance(s, dict)]
    return {
        kind: float(sum(s.get(field) or 0 for s in states))
        for kind, field in _ENGINE_TOKENS.items()
    }


router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text exposition; no authentication (scrape it from inside the network)."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
