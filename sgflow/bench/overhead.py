"""``sgflow bench overhead``: extraction through the service ÷ the executor ÷ raw ``/generate``.

One cluster (an engine, one Celery worker, the API, an embedded Valkey) and the same
extraction inputs (a short text about a person, a 5-field schema), each run three ways,
one at a time:

1. **service**: ``POST /v1/extract`` (HTTP → API → Redis → Celery worker → executor →
   engine → Redis → API → HTTP), timed by the client;
2. **executor**: ``execute()`` of the same ``extract`` program in this process against
   the same engine, with an endpoint that records every ``/generate`` body it sends;
3. **raw**: those recorded bodies posted to ``/generate`` as they are.

The engine's prefix cache is flushed before each of the three (untimed), so each starts
from the same cold cache; temperature 0, so each way generates the same tokens (the token
counts are reported to show it). One warm-up input comes first (the grammar compiled,
the worker's endpoint built). Reported: ``service ÷ executor - 1`` (target <= 0.15) and
``executor ÷ raw - 1``, each as the median of the per-input ratios and as the ratio of the
total times.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from sgflow.bench._common import (
    RecordingEndpoint,
    bench_cluster,
    extract_ir,
    extraction_inputs,
    flush_cache,
    median,
    ratio,
    raw_generate,
)
from sgflow.bench.report import Report, Target, progress
from sgflow.client import Client
from sgflow.execution import execute

__all__ = ["run"]

FILLER = 3  # sentences of padding per text: ~110 prompt tokens per extraction
TARGET = Target("<=", 0.15)


def via_service(api: Client, inputs: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    answer = api.extract(inputs["schema"], inputs["text"], timeout_s=300)
    seconds = time.perf_counter() - start
    view = answer["run"]
    if answer.get("object") is None or view.get("status") != "succeeded":
        raise RuntimeError(f"the service's extraction failed: {view.get('error')}")
    usage = view.get("usage") or {}
    return {"seconds": seconds, "object": answer["object"], **_tokens(usage)}


def via_executor(endpoint: RecordingEndpoint, ir: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    result = execute(ir, inputs, endpoint)
    seconds = time.perf_counter() - start
    if not result.ok:
        raise RuntimeError(f"the executor's extraction failed: {result.error}")
    return {"seconds": seconds, "object": result.output, **_tokens(result.usage)}


def via_raw(client: httpx.Client, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    metas = []
    start = time.perf_counter()
    for body in bodies:
        metas.append(raw_generate(client, body))
    seconds = time.perf_counter() - start
    usage = {
        key: sum(int(m.get(key, 0)) for m in metas)
        for key in ("prompt_tokens", "cached_tokens", "completion_tokens")
    }
    return {"seconds": seconds, **_tokens(usage)}


def _tokens(usage: dict[str, Any]) -> dict[str, int]:
    keys = ("prompt_tokens", "cached_tokens", "completion_tokens")
    return {k: int(usage.get(k, 0)) for k in keys}


def one_input(
    api: Client,
    endpoint: RecordingEndpoint,
    engine: httpx.Client,
    ir: Any,
    inputs: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    flush_cache(engine)
    service = via_service(api, inputs)
    flush_cache(engine)
    endpoint.take()
    executor = via_executor(endpoint, ir, inputs)
    bodies = [call.body for call in endpoint.take()]
    flush_cache(engine)
    raw = via_raw(engine, bodies)
    raw["requests"] = len(bodies)
    return {"service": service, "executor": executor, "raw": raw}


def run(*, quick: bool) -> Report:
    n_inputs = 8 if quick else 30
    inputs = extraction_inputs(n_inputs + 1, filler=FILLER)
    ir = extract_ir()
    report = Report("overhead", raw={"inputs": n_inputs, "workers": 1, "concurrency": 1})
    progress("overhead", "starting a cluster: engine, 1 worker, API, embedded Valkey")
    with bench_cluster("overhead", workers=1, concurrency=1) as cluster:
        key = cluster.create_key("bench")
        with (
            Client(cluster.api_url, key, timeout=600) as api,
            httpx.Client(base_url=cluster.engine_url, timeout=600) as engine,
        ):
            endpoint = RecordingEndpoint(cluster.engine_url)
            progress("overhead", "warm-up input")
            one_input(api, endpoint, engine, ir, inputs[0])
            rows = []
            for i, item in enumerate(inputs[1:], start=1):
                row = one_input(api, endpoint, engine, ir, item)
                rows.append(row)
                progress(
                    "overhead",
                    f"input {i}/{n_inputs}: "
                    + ", ".join(f"{k} {v['seconds']:.3f} s" for k, v in row.items()),
                )
    ways = ("service", "executor", "raw")
    totals = {w: sum(r[w]["seconds"] for r in rows) for w in ways}
    tokens = {
        w: {k: sum(r[w][k] for r in rows) for k in ("prompt_tokens", "completion_tokens")}
        for w in ways
    }
    per_svc = [r["service"]["seconds"] / r["executor"]["seconds"] - 1 for r in rows]
    per_exe = [r["executor"]["seconds"] / r["raw"]["seconds"] - 1 for r in rows]
    report.tables["per way (seconds; tokens summed over the inputs)"] = [
        {
            "way": w,
            "total_s": round(totals[w], 3),
            "median_s": round(median([r[w]["seconds"] for r in rows]) or 0.0, 4),
            **tokens[w],
        }
        for w in ways
    ]
    report.raw.update(
        totals_s={w: round(v, 3) for w, v in totals.items()},
        tokens=tokens,
        per_input=[
            {w: {k: (round(v, 4) if k == "seconds" else v) for k, v in r[w].items()} for w in ways}
            for r in rows
        ],
    )
    svc_total = ratio(totals["service"], totals["executor"])
    exe_total = ratio(totals["executor"], totals["raw"])
    report.add("service_overhead", median(per_svc), TARGET)
    report.add("service_overhead_total", None if svc_total is None else svc_total - 1, TARGET)
    report.add("executor_overhead", median(per_exe))
    report.add("executor_overhead_total", None if exe_total is None else exe_total - 1)
    counts = {w: tokens[w]["completion_tokens"] for w in ways}
    if len(set(counts.values())) > 1:
        report.notes.append(f"completion tokens differ between the ways: {counts}")
    objects = sum(r["service"]["object"] == r["executor"]["object"] for r in rows)
    if objects != len(rows):
        report.notes.append(f"service and executor agreed on {objects}/{len(rows)} objects")
    return report
