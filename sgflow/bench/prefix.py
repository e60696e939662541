"""``sgflow bench prefix``: a 4-step program over one document, prefix reuse ÷ cache flushed.

The program asks four short questions about one ~1,000-token document (the first step
carries the document, the next three continue the conversation). The same run (same
document, same program, temperature 0) is executed ``runs`` times in each mode, through
the executor against one engine:

- **reuse**: the engine's prefix cache as it is: every request after the first of the
  first run finds its prefix (the system prompt, the document, the earlier steps) cached;
- **flushed**: the cache is emptied before every ``/generate`` (:class:`FlushingEndpoint`),
  so every request prefills its whole prompt (the flushes themselves are not counted).

One warm-up run comes first (the answers' grammars compiled, the document cached), then
the measured runs alternate reuse / flushed, so a noisy neighbour slows both modes
alike. A reuse run that follows a flushed run still finds the conversation cached: the
flushed run's last request leaves exactly that text in the cache. Answers are short
(regex-bounded, at most 6 tokens) so the runs are dominated by prompt processing, which
is what a prefix cache saves.

Reported: end-to-end time per run (median and total) in both modes, flushed ÷ reuse
(target >= 3; also with the first reuse run starting from an empty cache), and cached ÷
prompt tokens in each mode.
"""

from __future__ import annotations

import time
from typing import Any

from sgflow.bench._common import FlushingEndpoint, median, ratio
from sgflow.bench.engine import THREADS, document
from sgflow.bench.report import Report, Target, progress
from sgflow.engine.launcher import EngineProcess
from sgflow.execution import SgflowEndpoint, execute
from sgflow.programs import compile_program
from sgflow.programs.model import Program

__all__ = ["PROGRAM", "run"]

WORD, YEAR, NUMBER = "[A-Z][a-z]{2,11}", "1[89][0-9]{2}", "[0-9]{1,3}"
QUESTIONS = [  # (question, answer regex)
    ("Which harbour logged 52 ships? Answer with its name only.", WORD),
    ("In which year did fact 12 happen? Answer with the year only.", YEAR),
    ("How many storms did fact 20 log? Answer with the number only.", NUMBER),
    ("How many ships did the harbour log in fact 30? Answer with the number only.", NUMBER),
]

PROGRAM: dict[str, Any] = {
    "program": "bench-prefix",
    "version": 1,
    "description": "Four questions about one document.",
    "inputs": {
        "type": "object",
        "properties": {"document": {"type": "string", "minLength": 1}},
        "required": ["document"],
        "additionalProperties": False,
    },
    "policy": {"timeout_s": 1800},  # a busy machine must not fail a slow run
    "system": "You answer questions about the harbour records below, briefly and exactly.",
    "steps": [
        {
            "id": f"q{i}",
            "user": ("Records:\n{{ inputs.document }}\n\n" if i == 1 else "") + question,
            "gen": {"regex": regex, "max_tokens": 16},
        }
        for i, (question, regex) in enumerate(QUESTIONS, start=1)
    ],
}


def one_run(endpoint: SgflowEndpoint, ir: Any, doc: str) -> dict[str, Any]:
    """One run's end-to-end seconds (less the time spent flushing) and token usage."""
    flushing = endpoint.flush_s if isinstance(endpoint, FlushingEndpoint) else 0.0
    start = time.perf_counter()
    result = execute(ir, {"document": doc}, endpoint)
    seconds = time.perf_counter() - start
    if isinstance(endpoint, FlushingEndpoint):
        seconds -= endpoint.flush_s - flushing
    if not result.ok:
        raise RuntimeError(f"the prefix program failed: {result.error}")
    return {"seconds": seconds, **result.usage, "answers": result.output}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    prompt = sum(int(r["prompt_tokens"]) for r in runs)
    cached = sum(int(r["cached_tokens"]) for r in runs)
    seconds = [float(r["seconds"]) for r in runs]
    return {
        "runs": len(runs),
        "total_s": round(sum(seconds), 3),
        "median_s": round(median(seconds) or 0.0, 4),
        "per_run_s": [round(s, 4) for s in seconds],
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "completion_tokens": sum(int(r["completion_tokens"]) for r in runs),
        "cached_ratio": round(cached / prompt, 4) if prompt else 0.0,
    }


def run(*, quick: bool) -> Report:
    n_runs = 3 if quick else 20
    ir = compile_program(Program.model_validate(PROGRAM))
    doc = document()
    report = Report("prefix", raw={"runs": n_runs, "threads": THREADS, "steps": len(QUESTIONS)})
    progress("prefix", f"starting the engine ({THREADS} threads)")
    with EngineProcess("--threads", str(THREADS), startup_s=180) as engine:
        reuse_ep, flushed_ep = SgflowEndpoint(engine.url), FlushingEndpoint(engine.url)
        try:
            warm = one_run(reuse_ep, ir, doc)  # compiles the answers' grammars
            progress("prefix", f"warm-up run: {warm['seconds']:.2f} s")
            modes: dict[str, list[dict[str, Any]]] = {"reuse": [], "flushed": []}
            for i in range(n_runs):
                modes["reuse"].append(one_run(reuse_ep, ir, doc))
                modes["flushed"].append(one_run(flushed_ep, ir, doc))
                times = [f"{m} {modes[m][-1]['seconds']:.2f} s" for m in modes]
                progress("prefix", f"run {i + 1}/{n_runs}: {', '.join(times)}")
            flushes = flushed_ep.flushes
        finally:
            flushed_ep.close()
    reuse, flushed = summarize(modes["reuse"]), summarize(modes["flushed"])
    answers = {str(r["answers"]) for r in modes["reuse"] + modes["flushed"]}
    report.raw.update(
        reuse=reuse,
        flushed=flushed,
        warm_up_s=round(warm["seconds"], 3),
        flushes=flushes,
        answers=sorted(answers),
        prompt_tokens_per_run=modes["reuse"][0]["prompt_tokens"],
    )
    report.tables["per mode"] = [
        {"mode": k, **{f: v[f] for f in ("runs", "total_s", "median_s", "cached_ratio")}}
        | {"prompt_tokens": v["prompt_tokens"], "cached_tokens": v["cached_tokens"]}
        for k, v in (("reuse", reuse), ("flushed", flushed))
    ]
    report.add("reuse_speedup_e2e", ratio(flushed["total_s"], reuse["total_s"]), Target(">=", 3.0))
    report.add("reuse_speedup_median_run", ratio(flushed["median_s"], reuse["median_s"]))
    # the same count of runs when the first one starts cold (the warm-up run, which also
    # compiled the grammars): what a fresh engine gives
    cold_start = warm["seconds"] + sum(r["seconds"] for r in modes["reuse"][:-1])
    report.add("reuse_speedup_from_cold", ratio(flushed["total_s"], cold_start))
    report.add("reuse_cached_ratio", reuse["cached_ratio"])
    report.add("flushed_cached_ratio", flushed["cached_ratio"])
    if len(answers) > 1:
        report.notes.append(f"the modes gave different answers: {sorted(answers)}")
    return report
