"""``sgflow bench openai``: the same extraction through ``POST /v1/extract`` and through the
OpenAI SDK's ``chat.completions.parse`` against the same running cluster.

One cluster (an engine, one Celery worker, the API, an embedded Valkey); the same inputs (a
short text about a person, the 5-field ``PERSON_SCHEMA``), each extracted two ways, one
at a time:

1. **extract**: ``POST /v1/extract`` with the schema and the text (sgflow's client);
2. **openai**: the ``openai`` SDK, unchanged (``base_url`` and ``api_key``), calling
   ``chat.completions.parse`` with :class:`Person` (a Pydantic model whose schema is
   ``PERSON_SCHEMA``), the ``extract`` program's system prompt and user message,
   temperature 0 and the program's ``max_tokens`` (512).

The engine's prefix cache is flushed (untimed) before each call, so both start cold; the
order of the two alternates from input to input so that drift on a shared machine falls on
both. One warm-up input comes first (the grammar compiled, the worker's endpoint built).
Reported: median and p95 latency of each way, and ``openai ÷ extract`` as the ratio of the
medians (target <= 1.1), of the p95s, and the median of the per-input ratios.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from sgflow.bench._common import (
    bench_cluster,
    extraction_inputs,
    flush_cache,
    median,
    ratio,
)
from sgflow.bench.report import Report, Target, percentiles, progress
from sgflow.client import Client

__all__ = ["Person", "messages", "run", "summarize"]

FILLER = 3  # sentences of padding per text, as in ``overhead``: ~110 prompt tokens
MAX_TOKENS = 512  # the ``extract`` program's gen.max_tokens
TARGET = Target("<=", 1.1)
WAYS = ("extract", "openai")


# PERSON_SCHEMA as the Pydantic model an SDK user writes (no docstring: it would become the
# schema's description)
class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=40)
    age: int = Field(ge=0, le=120)
    city: str = Field(max_length=40)
    job: str = Field(max_length=40)
    since: int = Field(ge=1900, le=2100)


def messages(text: str) -> list[dict[str, str]]:
    """The ``extract`` program's system prompt and user message for ``text`` (no
    instructions, no examples), as chat messages."""
    from sgflow.service.routes.extract import extract_program

    system = str(extract_program()["system"])
    user = f"Text:\n{text}\n\nExtract the data as JSON."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def via_extract(api: Client, inputs: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    answer = api.extract(inputs["schema"], inputs["text"], timeout_s=300)
    seconds = time.perf_counter() - start
    view = answer["run"]
    if answer.get("object") is None or view.get("status") != "succeeded":
        raise RuntimeError(f"/v1/extract failed: {view.get('error')}")
    usage = view.get("usage") or {}
    return {
        "seconds": seconds,
        "object": answer["object"],
        "prompt_tokens": int(usage.get("prompt_tokens", 0)),
        "completion_tokens": int(usage.get("completion_tokens", 0)),
    }


def via_openai(sdk: Any, model: str, inputs: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    completion = sdk.chat.completions.parse(
        model=model,
        messages=messages(inputs["text"]),
        response_format=Person,
        temperature=0,
        max_tokens=MAX_TOKENS,
    )
    seconds = time.perf_counter() - start
    parsed = completion.choices[0].message.parsed
    if not isinstance(parsed, Person):
        raise RuntimeError(f"chat.completions.parse gave no object: {completion}")
    usage = completion.usage
    return {
        "seconds": seconds,
        "object": parsed.model_dump(),
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
    }


def summarize(rows: list[dict[str, dict[str, Any]]], report: Report) -> Report:
    """Fill ``report`` from ``rows`` (one per input: ``{"extract": {...}, "openai": {...}}``,
    each with ``seconds``, ``object``, ``prompt_tokens``, ``completion_tokens``)."""
    seconds = {w: [r[w]["seconds"] for r in rows] for w in WAYS}
    stats = {w: percentiles(seconds[w]) for w in WAYS}
    tokens = {
        w: {k: sum(int(r[w][k]) for r in rows) for k in ("prompt_tokens", "completion_tokens")}
        for w in WAYS
    }
    report.tables["per way (seconds; tokens summed over the inputs)"] = [
        {
            "way": w,
            "n": len(seconds[w]),
            "median_s": _round(stats[w]["p50"]),
            "p95_s": _round(stats[w]["p95"]),
            "total_s": round(sum(seconds[w]), 3),
            **tokens[w],
        }
        for w in WAYS
    ]
    per_input = [r["openai"]["seconds"] / r["extract"]["seconds"] for r in rows]
    report.add(
        "openai_over_extract_median", ratio(stats["openai"]["p50"], stats["extract"]["p50"]), TARGET
    )
    report.add("openai_over_extract_p95", ratio(stats["openai"]["p95"], stats["extract"]["p95"]))
    report.add("openai_over_extract_per_input_median", median(per_input))
    report.raw.update(
        latency_s={w: {k: _round(v) for k, v in stats[w].items()} for w in WAYS},
        tokens=tokens,
        per_input=[
            {w: {k: (round(v, 4) if k == "seconds" else v) for k, v in r[w].items()} for w in WAYS}
            for r in rows
        ],
    )
    counts = {w: tokens[w]["completion_tokens"] for w in WAYS}
    if len(set(counts.values())) > 1:
        report.notes.append(f"completion tokens differ between the ways: {counts}")
    same = sum(r["extract"]["object"] == r["openai"]["object"] for r in rows)
    if same != len(rows):
        report.notes.append(f"the two ways agreed on {same}/{len(rows)} objects")
    return report


def _round(value: float | int | None) -> float | None:
    return None if value is None else round(float(value), 4)


def one_input(
    api: Client, sdk: Any, model: str, engine: httpx.Client, inputs: dict[str, Any], i: int
) -> dict[str, dict[str, Any]]:
    row: dict[str, dict[str, Any]] = {}
    for way in WAYS if i % 2 == 0 else WAYS[::-1]:
        flush_cache(engine)
        row[way] = via_extract(api, inputs) if way == "extract" else via_openai(sdk, model, inputs)
    return row


def run(*, quick: bool) -> Report:
    try:
        import openai
    except ImportError as exc:  # a dev dependency
        raise RuntimeError(
            "sgflow bench openai needs the openai package (pip install -e .[dev])"
        ) from exc

    n_inputs = 6 if quick else 30
    inputs = extraction_inputs(n_inputs + 1, filler=FILLER)
    report = Report(
        "openai",
        raw={"inputs": n_inputs, "workers": 1, "concurrency": 1, "max_tokens": MAX_TOKENS},
    )
    progress("openai", "starting a cluster: engine, 1 worker, API, embedded Valkey")
    with bench_cluster("openai", workers=1, concurrency=1) as cluster:
        key = cluster.create_key("bench")
        with (
            Client(cluster.api_url, key, timeout=600) as api,
            openai.OpenAI(
                base_url=f"{cluster.api_url}/v1", api_key=key, max_retries=0, timeout=600
            ) as sdk,
            httpx.Client(base_url=cluster.engine_url, timeout=600) as engine,
        ):
            models = [m.id for m in sdk.models.list() if m.owned_by == "sgflow"]
            if not models:
                raise RuntimeError("GET /v1/models lists no engine model")
            model = models[0]
            report.raw["model"] = model
            progress("openai", f"warm-up input (model {model})")
            one_input(api, sdk, model, engine, inputs[0], 0)
            rows = []
            for i, item in enumerate(inputs[1:], start=1):
                row = one_input(api, sdk, model, engine, item, i)
                rows.append(row)
                progress(
                    "openai",
                    f"input {i}/{n_inputs}: "
                    + ", ".join(f"{w} {row[w]['seconds']:.3f} s" for w in WAYS),
                )
    return summarize(rows, report)
