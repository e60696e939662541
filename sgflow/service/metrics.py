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
- ``sgflow_event_subscribers`` (gauge, this API process): open event streams and waiting
  extractions; ``sgflow_event_streams_followed`` (gauge, this process): runs its event hub
  follows (one ``XREAD`` for all of them).

A scrape gathers every number first, awaiting Redis (one round trip) and the engines
concurrently, then formats them: no thread waits.

The run and step counters come from :mod:`sgflow.store.stats`; see there for how they can
under-count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
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

from sgflow.adapters.detect import base_url
from sgflow.service.events import EventHub
from sgflow.store import AsyncRunStore, MetricsSnapshot

__all__ = ["ENGINE_TIMEOUT_S", "Scrape", "SgflowCollector", "gather", "router"]

ENGINE_TIMEOUT_S = 1.0
_ENGINE_TOKENS = {"prompt": "prompt_tokens", "cache_hit": "cache_hit_tokens", "generated": "generated_tokens"}  # fmt: skip


@dataclass(frozen=True)
class Scrape:
    """The numbers of one scrape: the store's, each engine's token sums (None: it did not
    answer) and this process's event hub."""

    store: MetricsSnapshot
    engines: dict[str, dict[str, float] | None]
    subscribers: int = 0
    followed: int = 0


async def gather(
    store: AsyncRunStore,
    engine_urls: Sequence[str] = (),
    *,
    hub: EventHub | None = None,
    engine_timeout_s: float = ENGINE_TIMEOUT_S,
) -> Scrape:
    """Every number ``/metrics`` shows: the store's in one round trip, the engines'
    ``/server_info`` concurrently (``engine_timeout_s`` default 1 each)."""
    async with httpx.AsyncClient(timeout=engine_timeout_s) as client:
        engines = asyncio.gather(*(_engine_tokens(client, url) for url in engine_urls))
        snapshot, sums = await asyncio.gather(store.metrics(), engines)
    return Scrape(
        store=snapshot,
        engines=dict(zip(engine_urls, sums, strict=True)),
        subscribers=hub.subscriber_count if hub is not None else 0,
        followed=hub.run_count if hub is not None else 0,
    )


class SgflowCollector(Collector):
    """The metric families of one :class:`Scrape`."""

    def __init__(self, scrape: Scrape) -> None:
        self.scrape = scrape

    def collect(self) -> Iterable[Metric]:
        yield from self._runs()
        yield from self._engines()
        yield GaugeMetricFamily(
            "sgflow_event_subscribers",
            "Open event streams and waiting extractions in this API process",
            value=self.scrape.subscribers,
        )
        yield GaugeMetricFamily(
            "sgflow_event_streams_followed",
            "Runs this API process's event hub follows",
            value=self.scrape.followed,
        )

    def _runs(self) -> Iterator[Metric]:
        snap = self.scrape.store
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
        for url, sums in self.scrape.engines.items():
            up.add_metric([url], 0 if sums is None else 1)
            if sums is None:
                continue
            for kind, value in sums.items():
                tokens.add_metric([url, kind], value)
            if sums["prompt"] > 0:
                ratio.add_metric([url], sums["cache_hit"] / sums["prompt"])
        yield from (up, tokens, ratio)


async def _engine_tokens(client: httpx.AsyncClient, url: str) -> dict[str, float] | None:
    """The engine's token counters summed over its ``internal_states``; ``None`` if it did
    not answer 200 with JSON in time."""
    try:
        response = await client.get(f"{base_url(url)}/server_info")
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
async def metrics(request: Request) -> Response:
    """Prometheus text exposition; no authentication (scrape it from inside the network)."""
    state = request.app.state
    scrape = await gather(
        state.runs,
        state.settings.engine_urls,
        hub=state.hub,
        engine_timeout_s=state.settings.engine_health_timeout_s,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SgflowCollector(scrape))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
