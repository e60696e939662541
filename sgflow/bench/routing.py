"""``sgflow bench routing``: two engine replicas behind sglang-router, cache_aware ÷ round_robin.

Four programs, each with its own ~520-token system prompt, are run in a seeded random
interleaving (the same order for both policies) by two concurrent clients, the way two
workers would, through the executor against the router's URL. Each engine's KV memory is
sized to hold about two of the four prefixes (``--cache-mb 30 --ctx 1024``): the working set is larger
than one replica's cache, which is when routing matters (with caches that hold everything,
every policy converges to all hits after the first pass). Between policies the router is
restarted and both engines' caches are flushed.

Reported: cached-token ratio (cached ÷ prompt tokens over all runs) and wall time per
policy, and cache_aware ÷ round_robin for both (targets: cached ratio >= 1.5x).
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from sgflow.bench._common import flush_cache
from sgflow.bench.report import Report, Target, progress
from sgflow.cluster import Cluster, ClusterConfig
from sgflow.execution import SgflowEndpoint, execute
from sgflow.programs import compile_program
from sgflow.programs.model import Program

__all__ = ["run"]

COMPANIES = ["Arkwright Freight", "Bellhaven Mills", "Corvid Optics", "Dunlin Energy"]
# ~1,360 KV cells per engine (23,040 B each): two ~520-token prefixes and the running requests.
# --ctx lowers the engine's floor of one full context of cells.
ENGINE_ARGS = ("--cache-mb", "30", "--ctx", "1024")
CLIENTS = 2


def system_prompt(company: str, n_facts: int = 16) -> str:
    """About 520 tokens of facts that belong to one company only."""
    seed = sum(map(ord, company))
    facts = [
        f"Record {i}: {company} depot {seed % 97 + i} shipped {13 + (seed * i) % 911} crates "
        f"to port {(seed + 7 * i) % 53} in week {1 + (seed + i) % 52}."
        for i in range(1, n_facts + 1)
    ]
    return f"You answer questions about {company} using only these records.\n" + "\n".join(facts)


def program(index: int) -> dict[str, Any]:
    return {
        "program": f"routing-{index}",
        "version": 1,
        "inputs": {
            "type": "object",
            "properties": {"record": {"type": "integer", "minimum": 1, "maximum": 16}},
            "required": ["record"],
        },
        "system": system_prompt(COMPANIES[index]),
        "steps": [
            {
                "id": "answer",
                "user": "Which port did record {{ inputs.record }} ship to? Reply with a number.",
                "gen": {"regex": "[0-9]{1,2}", "max_tokens": 4},
            }
        ],
    }


def schedule(n_runs: int, seed: int = 7) -> list[tuple[int, int]]:
    """``(program index, record)`` per run: every program equally often, seeded shuffle."""
    order = [(i % len(COMPANIES), 1 + (i * 5) % 16) for i in range(n_runs)]
    random.Random(seed).shuffle(order)
    return order


def measure(router_url: str, order: list[tuple[int, int]]) -> dict[str, Any]:
    irs = [compile_program(Program.model_validate(program(i))) for i in range(len(COMPANIES))]
    endpoint = SgflowEndpoint(router_url)
    prompt = cached = failed = 0

    def one(item: tuple[int, int]) -> tuple[int, int, bool]:
        index, record = item
        result = execute(irs[index], {"record": record}, endpoint)
        usage = result.usage
        return int(usage.get("prompt_tokens", 0)), int(usage.get("cached_tokens", 0)), result.ok

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        for p, c, ok in pool.map(one, order):
            prompt, cached, failed = prompt + p, cached + c, failed + (not ok)
    wall = time.perf_counter() - start
    return {
        "wall_s": round(wall, 3),
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "cached_ratio": round(cached / prompt, 4) if prompt else 0.0,
        "failed_runs": failed,
        "runs": len(order),
    }


def run(*, quick: bool) -> Report:
    n_runs = 20 if quick else 80
    order = schedule(n_runs)
    report = Report("routing", raw={"runs": n_runs, "engine_args": ENGINE_ARGS, "clients": CLIENTS})
    results: dict[str, dict[str, Any]] = {}
    with TemporaryDirectory(prefix="sgflow-bench-routing-") as tmp:
        engines = Cluster(
            ClusterConfig(
                replicas=2,
                engine_args=ENGINE_ARGS,
                router=False,
                workers=0,
                api=False,
                data_dir=Path(tmp) / "engines",
            )
        )
        progress("routing", "starting 2 engines (1 thread each)")
        with engines:
            for policy in ("round_robin", "cache_aware"):
                for url in engines.engine_urls:
                    with httpx.Client(base_url=url, timeout=10) as client:
                        flush_cache(client)
                router = Cluster(
                    ClusterConfig(
                        engine_urls=engines.engine_urls,
                        policy=policy,
                        workers=0,
                        api=False,
                        data_dir=Path(tmp) / policy,
                    )
                )
                with router:
                    progress("routing", f"{policy}: {n_runs} runs, {CLIENTS} clients")
                    results[policy] = measure(str(router.router_url), order)
    report.raw["policies"] = results
    report.tables["per policy"] = [{"policy": k, **v} for k, v in results.items()]
    aware, rr = results["cache_aware"], results["round_robin"]
    report.add(
        "cache_aware_vs_round_robin_cached_ratio",
        aware["cached_ratio"] / rr["cached_ratio"] if rr["cached_ratio"] else None,
        Target(">=", 1.5),
    )
    report.add("round_robin_vs_cache_aware_wall", rr["wall_s"] / aware["wall_s"], Target(">=", 1.0))
    report.add("cache_aware_cached_ratio", aware["cached_ratio"])
    report.add("round_robin_cached_ratio", rr["cached_ratio"])
    if aware["failed_runs"] or rr["failed_runs"]:
        report.notes.append(
            f"failed runs: cache_aware {aware['failed_runs']}, round_robin {rr['failed_runs']}"
        )
    return report
