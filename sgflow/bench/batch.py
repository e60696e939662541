"""``sgflow bench batch``: ``POST /v1/batches`` with 2 workers ÷ the engine's own limit.

One cluster (an engine, two Celery workers of one run each, the API, an embedded Valkey)
and ``n`` extraction inputs (short texts about people, one 5-field schema), the library's
``extract`` program:

1. **batch**: ``POST /v1/batches`` with the inputs, polled until it is completed; the
   time from the POST to the completed status;
2. **raw**: the ``/generate`` request the executor sends for each input (captured by
   running the program on an endpoint with no engine, :class:`PromptCapture`: the prompt
   of a one-step program does not depend on the answer), posted by 2 concurrent clients,
   the same concurrency as the workers. Greedy decoding of sequences batched together is
   not bit-exact, so the two ways can generate a little differently (token counts are
   reported; ``batch_vs_engine_limit_tokens_per_s`` compares completion tokens/s).

The inputs are split in two halves, measured raw, batch, batch, raw (ABBA: a drift in
the machine's speed, e.g. a neighbour's load, cancels out); the engine's prefix cache is
flushed before each part (untimed); a warm-up batch of 2 inputs compiles the grammar and
warms both workers. Reported: inputs/min both ways and batch ÷ raw (target >= 0.85).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from sgflow.bench._common import (
    bench_cluster,
    capture_prompts,
    extract_ir,
    extraction_inputs,
    flush_cache,
    person,
    ratio,
    raw_generate,
)
from sgflow.bench.report import Report, Target, progress
from sgflow.client import BATCH_FINAL, Client
from sgflow.service.routes.extract import extract_program

__all__ = ["run"]

CONCURRENCY = 2
POLL_S = 0.1


def run_batch(api: Client, inputs: list[dict[str, Any]], tag: str) -> dict[str, Any]:
    """Submit one batch of the ``extract`` program and wait for it: seconds and rows."""
    lines = [{"custom_id": f"{tag}-{i}", "inputs": item} for i, item in enumerate(inputs)]
    start = time.perf_counter()
    batch = api.create_batch(extract_program(), lines)
    while batch["status"] not in BATCH_FINAL:
        time.sleep(POLL_S)
        batch = api.get_batch(batch["id"])
    seconds = time.perf_counter() - start
    rows = api.batch_results(batch["id"])
    return {"seconds": seconds, "batch": batch, "rows": rows}


def batch_tokens(api: Client, rows: list[dict[str, Any]]) -> dict[str, int]:
    totals = {"prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0}
    for row in rows:
        usage = api.get_run(row["run_id"]).get("usage") or {}
        for key in totals:
            totals[key] += int(usage.get(key, 0))
    return totals


def run_raw(url: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Post ``bodies`` to ``/generate`` from ``CONCURRENCY`` clients, each taking the next."""
    clients = [httpx.Client(base_url=url, timeout=600) for _ in range(CONCURRENCY)]
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            futures = [
                pool.submit(raw_generate, clients[i % CONCURRENCY], body)
                for i, body in enumerate(bodies)
            ]
            metas = [f.result() for f in futures]
        seconds = time.perf_counter() - start
    finally:
        for client in clients:
            client.close()
    tokens = {
        key: sum(int(m.get(key, 0)) for m in metas)
        for key in ("prompt_tokens", "cached_tokens", "completion_tokens")
    }
    completions = [int(m.get("completion_tokens", 0)) for m in metas]
    return {"seconds": seconds, "tokens": tokens, "completions": completions}


def run(*, quick: bool) -> Report:
    n_inputs = 40 if quick else 200
    inputs = extraction_inputs(n_inputs)
    ir = extract_ir()
    bodies = [
        body
        for i, item in enumerate(inputs)
        for body in capture_prompts(ir, item, json.dumps(person(i)))
    ]
    report = Report(
        "batch",
        raw={"inputs": n_inputs, "workers": 2, "concurrency_per_worker": 1},
    )
    half = n_inputs // 2
    segments = [  # ABBA: a linear drift in the machine's speed cancels out
        ("raw", 0, half),
        ("batch", 0, half),
        ("batch", half, n_inputs),
        ("raw", half, n_inputs),
    ]
    seconds = {"raw": 0.0, "batch": 0.0}
    raw_tokens = {"prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0}
    raw_completions: list[int] = []
    rows: list[dict[str, Any]] = []
    counts = {"total": 0, "completed": 0, "failed": 0}
    progress("batch", "starting a cluster: engine, 2 workers, API, embedded Valkey")
    with bench_cluster("batch", workers=2, concurrency=1) as cluster:
        key = cluster.create_key("bench")
        with (
            Client(cluster.api_url, key, timeout=600) as api,
            httpx.Client(base_url=cluster.engine_url, timeout=600) as engine,
        ):
            progress("batch", "warm-up batch of 2")
            run_batch(api, extraction_inputs(2, filler=2), "warm")
            for way, lo, hi in segments:
                flush_cache(engine)
                if way == "raw":
                    raw = run_raw(cluster.engine_url, bodies[lo:hi])
                    for k in raw_tokens:
                        raw_tokens[k] += raw["tokens"][k]
                    raw_completions += raw["completions"]
                    took = raw["seconds"]
                else:
                    done = run_batch(api, inputs[lo:hi], f"bench-{lo}")
                    rows += done["rows"]
                    for k in counts:
                        counts[k] += int(done["batch"]["request_counts"][k])
                    took = done["seconds"]
                seconds[way] += took
                progress("batch", f"{way}: inputs {lo}..{hi - 1} in {took:.1f} s")
            tokens = batch_tokens(api, rows)
    per_min = {way: 60 * n_inputs / s for way, s in seconds.items()}
    report.tables["per way"] = [
        {"way": "batch", "seconds": round(seconds["batch"], 2), "inputs_per_min": per_min["batch"]}
        | tokens,
        {"way": "raw", "seconds": round(seconds["raw"], 2), "inputs_per_min": per_min["raw"]}
        | raw_tokens,
    ]
    report.raw.update(
        seconds={k: round(v, 3) for k, v in seconds.items()},
        inputs_per_min={k: round(v, 2) for k, v in per_min.items()},
        request_counts=counts,
        tokens={"batch": tokens, "raw": raw_tokens},
        correct=sum(row.get("output") == person(i) for i, row in enumerate(rows)),
        raw_completion_tokens=raw_completions,
    )
    report.add("batch_vs_engine_limit", ratio(per_min["batch"], per_min["raw"]), Target(">=", 0.85))
    tps = {
        "batch": tokens["completion_tokens"] / seconds["batch"],
        "raw": raw_tokens["completion_tokens"] / seconds["raw"],
    }
    report.add("batch_vs_engine_limit_tokens_per_s", ratio(tps["batch"], tps["raw"]))
    report.add("batch_inputs_per_min", per_min["batch"])
    report.add("raw_inputs_per_min", per_min["raw"])
    if counts.get("failed"):
        report.notes.append(f"{counts['failed']} of {n_inputs} lines failed")
    if tokens["prompt_tokens"] != raw_tokens["prompt_tokens"]:
        report.notes.append(
            f"prompt tokens: batch {tokens['prompt_tokens']}, raw {raw_tokens['prompt_tokens']} "
            "(a run that repaired an answer sends more than its first request, all raw sends)"
        )
    if tokens["completion_tokens"] != raw_tokens["completion_tokens"]:
        report.notes.append(
            f"completion tokens: batch {tokens['completion_tokens']}, raw "
            f"{raw_tokens['completion_tokens']}, longest raw answer {max(raw_completions)} "
            "(greedy decoding of sequences batched together is not bit-exact, so a near-tie "
            "can go either way; batch_vs_engine_limit_tokens_per_s compares completion tokens/s)"
        )
    return report
