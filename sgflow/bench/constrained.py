"""``sgflow bench constrained``: JSON-Schema-constrained ÷ free generation, tokens/s.

For each of four schemas (nested objects, enums, arrays, string patterns) and one prompt
per schema, on one engine:

1. **constrained**: ``/generate`` with ``json_schema``; it generates ``n`` tokens (the
   grammar decides when the value is complete);
2. **free**, right after: the same prompt with no constraint, ``max_new_tokens = n`` and
   ``ignore_eos``, so exactly the same number of tokens.

Tokens/s is completion tokens ÷ the request's wall time (non-streaming). The prompt is
cached for both (the same prompt is sent over and over), so the time is decoding plus, for
the constrained side, everything the grammar costs per request and per token. One
discarded warm-up request per schema compiles its grammar; then ``runs`` pairs. Per schema: the median of the paired ratios; overall: the median of
all paired ratios (target >= 0.9, per schema too).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from sgflow.bench._common import median
from sgflow.bench.engine import THREADS, array, chatml, obj
from sgflow.bench.report import Report, Target, progress
from sgflow.engine.launcher import EngineProcess

__all__ = ["SCHEMAS", "run"]

MAX_TOKENS = 200
TARGET = Target(">=", 0.9)

_TEXT = {"type": "string", "maxLength": 32}
_INT = {"type": "integer"}

SCHEMAS: dict[str, tuple[str, dict[str, Any]]] = {  # name: (request, schema)
    "nested": (
        "Describe an invented book as JSON: title, year, its author and two chapters.",
        obj(
            title=_TEXT,
            year=_INT,
            author=obj(name=_TEXT, born=_INT, country=_TEXT),
            chapters=array(obj(number=_INT, title=_TEXT, pages=_INT), 2, 2),
        ),
    ),
    "enum": (
        "List four support tickets as JSON, each with a priority, a category and a status.",
        obj(
            tickets=array(
                obj(
                    priority={"enum": ["low", "medium", "high", "urgent"]},
                    category={"enum": ["billing", "login", "shipping", "refund", "other"]},
                    status={"enum": ["open", "pending", "closed"]},
                    escalated={"type": "boolean"},
                ),
                4,
                4,
            )
        ),
    ),
    "arrays": (
        "Give weekly readings of a weather station as JSON: temperatures, rain and notes.",
        obj(
            station=_TEXT,
            temperatures=array(_INT, 7, 7),
            rain_mm=array(_INT, 7, 7),
            notes=array({"type": "string", "maxLength": 24}, 2, 3),
        ),
    ),
    "pattern": (
        "Write three customer contacts as JSON, each with an id, a phone number and a date.",
        obj(
            contacts=array(
                obj(
                    id={"type": "string", "pattern": "^C-[0-9]{5}$"},
                    phone={"type": "string", "pattern": "^\\+1-[0-9]{3}-[0-9]{3}-[0-9]{4}$"},
                    joined={"type": "string", "pattern": "^20[0-9]{2}-[01][0-9]-[0-3][0-9]$"},
                    zip={"type": "string", "pattern": "^[0-9]{5}$"},
                ),
                3,
                3,
            )
        ),
    ),
}


def generate(client: httpx.Client, prompt: str, **params: Any) -> tuple[dict[str, Any], float]:
    """Non-streaming ``/generate`` at temperature 0: ``(meta_info, wall seconds)``."""
    body = {"text": prompt, "sampling_params": {"temperature": 0.0, **params}}
    start = time.perf_counter()
    response = client.post("/generate", json=body)
    wall = time.perf_counter() - start
    response.raise_for_status()
    data = response.json()
    meta: dict[str, Any] = data["meta_info"]
    if "json_schema" in params and (meta.get("finish_reason") or {}).get("type") != "length":
        json.loads(data["text"])  # a complete constrained answer that is not JSON is a bug
    return meta, wall


def pair(client: httpx.Client, prompt: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One constrained generation (``spec``), then a free generation of as many tokens.

    The length is taken from this very answer: at temperature 0 the answer can still vary
    from one request to the next (a cached prompt is evaluated in a different batch shape,
    so the logits differ in the last bits and a near-tie can flip)."""
    c_meta, c_wall = generate(client, prompt, **spec)
    c_tokens = int(c_meta["completion_tokens"])
    f_meta, f_wall = generate(client, prompt, max_new_tokens=c_tokens, ignore_eos=True)
    f_tokens = int(f_meta["completion_tokens"])
    return {
        "constrained_tokens": c_tokens,
        "free_tokens": f_tokens,
        "constrained_tps": c_tokens / c_wall,
        "free_tps": f_tokens / f_wall,
        "ratio": (c_tokens / c_wall) / (f_tokens / f_wall),
        "finish": (c_meta.get("finish_reason") or {}).get("type"),
        "cached_tokens": [int(c_meta.get("cached_tokens", 0)), int(f_meta.get("cached_tokens", 0))],
    }


def run(*, quick: bool) -> Report:
    n_runs = 3 if quick else 7
    report = Report("constrained", raw={"runs": n_runs, "max_new_tokens": MAX_TOKENS})
    per_schema: dict[str, list[dict[str, Any]]] = {}
    progress("constrained", f"starting the engine ({THREADS} threads)")
    with (
        EngineProcess("--threads", str(THREADS), startup_s=180) as engine,
        httpx.Client(base_url=engine.url, timeout=600) as client,
    ):
        for name, (request, schema) in SCHEMAS.items():
            prompt = chatml(request)
            spec = {"max_new_tokens": MAX_TOKENS, "json_schema": json.dumps(schema)}
            generate(client, prompt, **spec)  # warm-up: compiles the grammar, caches the prompt
            pairs = [pair(client, prompt, spec) for _ in range(n_runs)]
            per_schema[name] = pairs
            med = median([p["ratio"] for p in pairs])
            tokens = sorted({p["constrained_tokens"] for p in pairs})
            progress("constrained", f"{name}: {tokens} tokens, ratio {med:.3f}")
    rows: list[dict[str, Any]] = []
    for name, pairs in per_schema.items():
        rows.append(
            {
                "schema": name,
                "tokens": median([p["constrained_tokens"] for p in pairs]),
                "constrained_tps": median([p["constrained_tps"] for p in pairs]),
                "free_tps": median([p["free_tps"] for p in pairs]),
                "ratio": median([p["ratio"] for p in pairs]),
            }
        )
    report.tables["per schema (medians)"] = rows
    report.raw["schemas"] = {
        name: {"request": SCHEMAS[name][0], "schema": SCHEMAS[name][1], "pairs": pairs}
        for name, pairs in per_schema.items()
    }
    every = [p["ratio"] for pairs in per_schema.values() for p in pairs]
    report.add("constrained_vs_free_tps", median(every), TARGET)
    for name, pairs in per_schema.items():
        report.add(f"constrained_vs_free_tps/{name}", median([p["ratio"] for p in pairs]), TARGET)
    unequal = [
        name
        for name, pairs in per_schema.items()
        if any(p["constrained_tokens"] != p["free_tokens"] for p in pairs)
    ]
    if unequal:
        report.notes.append(f"lengths differed for: {', '.join(unequal)}")
    truncated = [
        name for name, pairs in per_schema.items() if any(p["finish"] == "length" for p in pairs)
    ]
    if truncated:
        report.notes.append(f"constrained hit max_new_tokens for: {', '.join(truncated)}")
    return report
