"""``sgflow bench SCENARIO|all [--quick]``: run scenarios, print their tables, write JSON.

Each scenario is a module of this package with ``run(*, quick: bool) -> Report``; it starts
what it measures (engines, router, workers, API) and stops it before returning, so
scenarios never share the CPU. ``all`` runs them in the order below and writes
``summary.json`` beside the per-scenario files; the scenarios in :data:`SOLO` (long failure
drills) run only when named. ``main`` returns 1 when a scenario crashed or missed a target
it marks required (:meth:`Report.add`, ``required=True``).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from sgflow.bench.report import Report, machine

__all__ = ["SCENARIOS", "SOLO", "main"]

SCENARIOS: dict[str, str] = {
    "engine": "the embedded engine vs llama-cpp-python (decode, JSON, cached TTFT)",
    "prefix": "a 4-step program over one document: prefix reuse vs cache flushed",
    "constrained": "JSON-Schema-constrained vs free generation tokens/s",
    "overhead": "extraction through HTTP + Celery vs the executor vs raw /generate",
    "openai": "the same extraction via the OpenAI SDK (chat.completions.parse) vs /v1/extract",
    "batch": "POST /batches with 2 workers vs the engine's own limit",
    "routing": "2 replicas behind sglang-router: cache_aware vs round_robin",
    "grammars": "compile time of the grammar library and JSONSchemaBench schemas",
    "coverage": "JSONSchemaBench declared/empirical coverage and compliance",
    "peers": "the same extraction on sgflow, llama-cpp-python and Outlines",
    "engines": "the library programs and JSONSchemaBench on every engine that runs here "
    "(embedded, llama-server, vLLM): validity, false successes, compliance, cached ratio",
    "load": "GET /v1/runs/{id} with 1,000 open event streams and 100 waiting extractions",
    "chaos": "kill -9 workers, restart Redis (AOF) and the engine mid-run: nothing lost "
    "(not in all)",
}
SOLO = frozenset({"chaos"})  # minutes of failure drills: run only when named


def main(scenario: str, *, quick: bool, out_dir: str) -> int:
    names = [n for n in SCENARIOS if n not in SOLO] if scenario == "all" else [scenario]
    out = Path(out_dir)
    reports: list[Report] = []
    failed: list[str] = []
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        print(f"\n### sgflow bench {name}{' --quick' if quick else ''}", flush=True)
        try:
            module = importlib.import_module(f"sgflow.bench.{name}")
            report: Report = module.run(quick=quick)
        except Exception:  # one broken scenario must not hide the others' numbers
            traceback.print_exc()
            failed.append(name)
            continue
        report.seconds = time.perf_counter() - t0
        report.print()
        print(f"wrote {report.write(out)}", flush=True)
        reports.append(report)
        missed = report.missed_required()
        if missed:
            print(f"{name}: required target missed: {', '.join(missed)}", file=sys.stderr)
            failed.append(name)
    if len(names) > 1:
        _summary(reports, failed, out, time.perf_counter() - started, quick)
    return 1 if failed else 0


def _summary(
    reports: list[Report], failed: list[str], out: Path, seconds: float, quick: bool
) -> None:
    rows: list[dict[str, Any]] = []
    print(f"\n== summary ({seconds / 60:.1f} min{', quick' if quick else ''}) ==")
    print(f"{'scenario':<12} {'metric':<40} {'value':>10} {'target':>9}  result")
    for report in reports:
        for row in report.results():
            if row["target"] == "—":
                continue
            rows.append({"scenario": report.scenario, **row})
            value = "n/a" if row["value"] is None else f"{row['value']:.4g}"
            verdict = {True: "pass", False: "MISS", None: ""}[row["met"]]
            print(
                f"{report.scenario:<12} {row['metric']:<40} {value:>10} {row['target']:>9}  "
                f"{verdict}"
            )
    for name in failed:
        print(f"{name:<12} (crashed or missed a required target: see above)", file=sys.stderr)
    summary = {
        "quick": quick,
        "seconds": round(seconds, 1),
        "results": rows,
        "crashed": failed,
        "machine": machine(),
    }
    path = out / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {path}")
