"""``sgflow bench constrained``: JSON-Schema-constrained ÷ free generation, tokens/s, with the
grammar's forced text jumped forward (the default) and sampled token by token.

For each of five schemas (nested objects, enums, arrays, string patterns, and a key-heavy
extraction record) and one prompt per schema, on one engine per mode (``jump_forward``, the
default: JSON laid out as ``json.dumps(indent=2)``, every key, separator and indentation
forced; ``token_by_token`` = ``--no-jump-forward``; ``free_layout`` = ``--json-layout free``,
the model choosing its whitespace, as before the fixed layout):

1. **constrained**: ``/generate`` with ``json_schema``; it generates ``n`` tokens (the
   grammar decides when the value is complete);
2. **free**, right after: the same prompt with no constraint, ``max_new_tokens = n`` and
   ``ignore_eos``, so exactly the same number of tokens.

Tokens/s is completion tokens ÷ the request's wall time (non-streaming). The prompt is
cached for both (the same prompt is sent over and over), so the time is decoding plus, for
the constrained side, everything the grammar costs per request and per token. One
discarded warm-up request per schema compiles its grammar; then ``runs`` pairs. Per schema
and mode: the median of the paired ratios (target >= 1.0 with jump-forward, >= 1.3 on the
key-heavy schema). Per schema, the seconds per constrained answer with the fixed layout and
with the free one (the same request: what a user waits), and their ratio's median over the
schemas (``answer_seconds/free_layout_vs_indent``). Also per schema: whether both modes gave
the same answer (greedy), the share of output tokens that were forced, and the engine's own
accounting of the mask's cost (filling xgrammar's bitmask and applying it) against
decoding, in ms per token.
"""

from __future__ import annotations

import json
import statistics
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
    "keys": (
        "Extract the customer record as JSON from: Dana Smith, 34, premium plan, active, "
        "newsletter yes, two orders, country US, language en, verified, no refunds.",
        obj(
            first_name={"type": "string", "maxLength": 12},
            last_name={"type": "string", "maxLength": 12},
            age={"type": "integer", "minimum": 0, "maximum": 120},
            plan={"enum": ["free", "basic", "premium", "enterprise"]},
            status={"enum": ["active", "suspended", "closed"]},
            newsletter_subscription={"type": "boolean"},
            number_of_orders={"type": "integer", "minimum": 0, "maximum": 999},
            country_code={"enum": ["US", "GB", "DE", "FR", "JP"]},
            preferred_language={"enum": ["en", "de", "fr", "ja"]},
            identity_verified={"type": "boolean"},
            has_requested_refunds={"type": "boolean"},
            account_tier_upgrade_eligible={"type": "boolean"},
        ),
    ),
}
KEY_HEAVY = "keys"
KEY_HEAVY_TARGET = Target(">=", 1.3)
MODES = {
    "jump_forward": (),  # the default: JSON laid out with indent 2, forced text jumped over
    "token_by_token": ("--no-jump-forward",),
    "free_layout": ("--json-layout", "free"),  # the model picks the whitespace (the old default)
}


def generate(client: httpx.Client, prompt: str, **params: Any) -> tuple[dict[str, Any], float]:
    """Non-streaming ``/generate`` at temperature 0: ``(meta_info + text, wall seconds)``."""
    body = {"text": prompt, "sampling_params": {"temperature": 0.0, **params}}
    start = time.perf_counter()
    response = client.post("/generate", json=body)
    wall = time.perf_counter() - start
    response.raise_for_status()
    data = response.json()
    meta: dict[str, Any] = {**data["meta_info"], "text": data["text"]}
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
        "answer_s": c_wall,
        "finish": (c_meta.get("finish_reason") or {}).get("type"),
        "cached_tokens": [int(c_meta.get("cached_tokens", 0)), int(f_meta.get("cached_tokens", 0))],
        "text": c_meta["text"],
    }


def _counters(client: httpx.Client) -> dict[str, float]:
    state = client.get("/server_info").json()["internal_states"][0]
    names = ("jump_forward_tokens", "grammar_masked_tokens", "grammar_mask_seconds")
    return {k: float(state.get(k) or 0) for k in (*names, "decode_seconds", "generated_tokens")}


def _measure(flags: tuple[str, ...], n_runs: int, mode: str) -> dict[str, dict[str, Any]]:
    """Every schema on one engine started with ``flags``: its pairs and its counters."""
    out: dict[str, dict[str, Any]] = {}
    progress("constrained", f"{mode}: starting the engine ({THREADS} threads)")
    with (
        EngineProcess("--threads", str(THREADS), *flags, startup_s=180) as engine,
        httpx.Client(base_url=engine.url, timeout=600) as client,
    ):
        for name, (request, schema) in SCHEMAS.items():
            prompt = chatml(request)
            spec = {"max_new_tokens": MAX_TOKENS, "json_schema": json.dumps(schema)}
            generate(client, prompt, **spec)  # warm-up: compiles the grammar, caches the prompt
            before = _counters(client)
            constrained = [generate(client, prompt, **spec)[0] for _ in range(2)]
            after = _counters(client)
            delta = {k: after[k] - before[k] for k in after}
            pairs = [pair(client, prompt, spec) for _ in range(n_runs)]
            out[name] = {
                "pairs": pairs,
                "counters": delta,
                "texts": [c["text"] for c in constrained],
            }
            med = median([p["ratio"] for p in pairs])
            tokens = sorted({p["constrained_tokens"] for p in pairs})
            progress("constrained", f"{mode} {name}: {tokens} tokens, ratio {med:.3f}")
    return out


def run(*, quick: bool) -> Report:
    n_runs = 3 if quick else 7
    report = Report("constrained", raw={"runs": n_runs, "max_new_tokens": MAX_TOKENS})
    measured = {mode: _measure(flags, n_runs, mode) for mode, flags in MODES.items()}
    rows: list[dict[str, Any]] = []
    for name in SCHEMAS:
        jump, step = measured["jump_forward"][name], measured["token_by_token"][name]
        loose = measured["free_layout"][name]
        counters = jump["counters"]
        generated = max(1.0, counters["generated_tokens"])
        masked = max(1.0, step["counters"]["grammar_masked_tokens"])
        rows.append(
            {
                "schema": name,
                "tokens": median([p["constrained_tokens"] for p in jump["pairs"]]),
                "ratio_jump_forward": median([p["ratio"] for p in jump["pairs"]]),
                "ratio_token_by_token": median([p["ratio"] for p in step["pairs"]]),
                "ratio_free_layout": median([p["ratio"] for p in loose["pairs"]]),
                "answer_s": round(statistics.median(p["answer_s"] for p in jump["pairs"]), 3),
                "answer_s_free_layout": round(
                    statistics.median(p["answer_s"] for p in loose["pairs"]), 3
                ),
                "forced_share": round(counters["jump_forward_tokens"] / generated, 3),
                "same_answer": jump["texts"][0] == step["texts"][0],
                "mask_ms_per_token": round(
                    1000 * step["counters"]["grammar_mask_seconds"] / masked, 3
                ),
                "decode_ms_per_token": round(1000 * step["counters"]["decode_seconds"] / masked, 3),
            }
        )
    report.tables["per schema (medians)"] = rows
    report.raw["schemas"] = {
        name: {
            "request": SCHEMAS[name][0],
            "schema": SCHEMAS[name][1],
            **{mode: measured[mode][name] for mode in MODES},
        }
        for name in SCHEMAS
    }
    for mode in MODES:
        every = [p["ratio"] for m in measured[mode].values() for p in m["pairs"]]
        report.add(
            f"constrained_vs_free_tps/{mode}",
            median(every),
            {"jump_forward": Target(">=", 1.0), "token_by_token": TARGET}.get(mode),
        )
    for row in rows:
        target = KEY_HEAVY_TARGET if row["schema"] == KEY_HEAVY else Target(">=", 1.0)
        report.add(
            f"constrained_vs_free_tps/jump_forward/{row['schema']}",
            row["ratio_jump_forward"],
            target,
        )
    report.add(  # what the fixed layout saves per answer, the same requests
        "answer_seconds/free_layout_vs_indent",
        median([r["answer_s_free_layout"] / r["answer_s"] for r in rows]),
        Target(">=", 1.0),
    )
    different = [r["schema"] for r in rows if not r["same_answer"]]
    if different:
        report.notes.append(
            "jump-forward changed the greedy answer for: "
            + ", ".join(different)
            + " (the forced text is tokenized on its own: another split at its first token)"
        )
    truncated = [
        name
        for name in SCHEMAS
        if any(p["finish"] == "length" for m in measured.values() for p in m[name]["pairs"])
    ]
    if truncated:
        report.notes.append(f"constrained hit max_new_tokens for: {', '.join(truncated)}")
    return report
