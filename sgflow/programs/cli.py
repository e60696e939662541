"""``sgflow check`` and ``sgflow run``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sgflow.cli_inputs import parse_inputs
from sgflow.jsonbounds import loads
from sgflow.programs.checker import load_program, parse_program
from sgflow.programs.errors import ProgramInvalid

__all__ = ["add_parsers", "run_check", "run_run"]


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("check", help="statically check program files")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--explain",
        action="store_true",
        help="for every JSON Schema, say per keyword whether the grammar enforces it",
    )
    p.add_argument(
        "--engine",
        metavar="URL|KIND",
        help="check each step against an engine: a URL (its kind is detected, or named as "
        "KIND+URL) or a kind (sglang, vllm, llamacpp, ollama, tgi, lmdeploy, trtllm, mlc); "
        "says per step what the engine enforces, what sgflow emulates and what it refuses",
    )
    p.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="skip compiling each constraint against the model's vocabulary (killable, "
        "bounded by SGFLOW_COMPILE_TIMEOUT_S), which finds what only the engine would",
    )
    p = sub.add_parser("run", help="run a program (starts the embedded engine unless --engine)")
    p.add_argument("file")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="K=V",
        help="an input: K=V (a string), K=@FILE (a file's text), K:=JSON",
    )
    p.add_argument("--inputs", help="a JSON file with the inputs object")
    p.add_argument("--inputs-jsonl", help="a JSONL file, one inputs object per line (a batch)")
    p.add_argument("--out", help="where the batch's results go (JSONL; default stdout)")
    p.add_argument(
        "--engine",
        help="URL of an engine of any supported kind, or KIND+URL (default: start the "
        "embedded one)",
    )
    p.add_argument("--concurrency", type=int, default=4, help="batch runs in flight (default 4)")
    p.add_argument("--trace", action="store_true", help="print the per-step trace")
    p.add_argument(
        "--live", action="store_true", help="print each step's text to stderr as it is generated"
    )
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")


# -- check ------------------------------------------------------------------------------------


def _engine(spec: str | None) -> tuple[Any, dict[str, Any] | None]:
    """The capabilities and a description of ``--engine`` (a kind, or a URL to probe)."""
    if not spec:
        return None, None
    from sgflow.adapters import ADAPTERS
    from sgflow.adapters.detect import detect

    if spec in ADAPTERS:
        return ADAPTERS[spec].capabilities, {"kind": spec}
    probe = detect(spec)
    described = {"kind": probe.kind, "url": probe.url, "model": probe.model}
    return ADAPTERS[probe.kind].capabilities, described


def _engine_plan(prog: Any, file: str, caps: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """Each constrained or selecting step on ``caps``' engine, and an ``engine.unsupported``
    error for every step it refuses."""
    from sgflow.adapters.plan import plan_program
    from sgflow.programs.compiler import compile_program
    from sgflow.programs.errors import ProgramError

    ir = compile_program(prog, base_dir=str(Path(file).resolve().parent))
    plans = plan_program(ir, caps)
    errors = [
        ProgramError(
            "engine.unsupported",
            p.pointer,
            f"step `{p.step}` needs {p.feature}, which {caps.name} cannot enforce: {p.how}",
            hint="run it on an engine that enforces it (sgflow engines list)",
            file=file,
        )
        for p in plans
        if p.support == "refused"
    ]
    return [p.to_dict() for p in plans], errors


def run_check(args: argparse.Namespace) -> int:
    report: list[dict[str, Any]] = []
    failed = False
    try:
        caps, engine = _engine(getattr(args, "engine", None))
    except Exception as exc:  # an engine that does not answer, or answers like none known
        print(f"sgflow check: --engine {args.engine}: {exc}", file=sys.stderr)
        return 2
    for file in args.files:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            print(f"{file}: cannot read: {exc.strerror}", file=sys.stderr)
            failed = True
            continue
        prog, errors = parse_program(text, file=file)
        if prog is not None and not errors and getattr(args, "compile", False):
            errors = _vocabulary_errors(prog, file)
        entry: dict[str, Any] = {
            "file": file,
            "ok": not errors,
            "errors": [e.to_dict() for e in errors],
        }
        if prog is not None and not errors:
            entry["prefix"] = _prefix(prog, file)
        if prog is not None and not errors and caps is not None:
            entry["engine"] = engine
            entry["plan"], refused = _engine_plan(prog, file, caps)
            errors = list(errors) + refused
            entry["ok"] = not errors
            entry["errors"] = [e.to_dict() for e in errors]
        if prog is not None and args.explain:
            entry["explain"] = _explain(prog, file, caps)
        report.append(entry)
        failed = failed or bool(errors)
        if not args.json:
            for e in errors:
                print(str(e))
            if not errors:
                print(f"{file}: ok ({len(prog.steps) if prog else 0} steps)")
            if "prefix" in entry:
                _print_prefix(entry["prefix"])
            if "plan" in entry:
                _print_plan(entry["engine"], entry["plan"])
            if "explain" in entry:
                _print_explain(entry["explain"])
    if args.json:
        print(json.dumps(report, indent=2))
    return 1 if failed else 0


def _vocabulary_errors(prog: Any, file: str) -> list[Any]:
    """Each constraint compiled against the embedded model's vocabulary, as the engine will:
    a schema can pass every static check and still not compile in time (or at all)."""
    from sgflow.engine.compile_pool import CompileFailed, CompilePool
    from sgflow.engine.vocabulary import tokenizer_info
    from sgflow.grammars import get_limits
    from sgflow.programs.compiler import compile_program
    from sgflow.programs.errors import ProgramError
    from sgflow.programs.report import step_pointers

    ir = compile_program(prog, base_dir=str(Path(file).resolve().parent))
    pointers = step_pointers(prog.steps)
    limits = get_limits()  # installed from the settings by `sgflow check`
    errors: list[Any] = []
    pool = CompilePool(
        tokenizer_info(),
        layout=limits.layout,
        timeout_s=limits.compile_timeout_s,
        fast_budget_s=limits.compile_timeout_s,
        fast_processes=1,
        slow_processes=1,
        ship=False,
    )
    try:
        for step in ir.iter_steps():
            constraint = step.gen.constraint if step.gen is not None else None
            if constraint is None or constraint.kind == "free" or constraint.source is None:
                continue
            try:
                pool.compile(constraint.kind, constraint.source)
            except CompileFailed as exc:
                errors.append(
                    ProgramError(
                        exc.code(constraint.kind),
                        f"{pointers.get(step.id, '/steps')}/gen",
                        f"step {step.id!r}: its {constraint.kind} does not compile against "
                        f"the model's vocabulary: {exc.message}",
                        "simplify the constraint (fewer optional properties, shorter "
                        "bounded strings), or raise SGFLOW_COMPILE_TIMEOUT_S",
                        file=file,
                    )
                )
    finally:
        pool.close()
    return errors


def _prefix(prog: Any, file: str) -> dict[str, Any]:
    from sgflow.programs.report import prefix_report

    return prefix_report(prog, base_dir=str(Path(file).resolve().parent))


def _print_prefix(prefix: dict[str, Any]) -> None:
    where = prefix["breaks_at"]
    line = f"  shared prefix: {prefix['shared_chars']} characters"
    print(line + (f", up to the first input in {where}" if where else ""))
    if prefix["static_chars_after"] >= 200:
        print(
            f"  hint: {prefix['static_chars_after']} characters of fixed text come after an "
            f"input in {where}; put per-input text after the instructions and examples so "
            "that runs share them in the engine's prefix cache"
        )


def _print_plan(engine: dict[str, Any], plans: list[dict[str, Any]]) -> None:
    print(f"  on {engine['kind']}{' at ' + engine['url'] if engine.get('url') else ''}:")
    for p in plans or [{"step": "-", "feature": "free text only", "support": "native", "how": ""}]:
        print(f"    step {p['step']:20} {p['feature']:12} {p['support']:9} {p['how']}")


def _explain(prog: Any, file: str, caps: Any = None) -> list[dict[str, Any]]:
    from sgflow.adapters.plan import explain_schema
    from sgflow.adapters.sglang import CAPABILITIES as SGLANG
    from sgflow.programs.report import explain_report

    def rows_for(schema: dict[str, Any]) -> list[dict[str, Any]]:
        return explain_schema(schema, caps or SGLANG)

    return explain_report(prog, rows_for, base_dir=str(Path(file).resolve().parent))


def _print_explain(sections: list[dict[str, Any]]) -> None:
    for section in sections:
        print(f"  {section['where']}:")
        for row in section["keywords"]:
            note = f"  ({row['note']})" if row.get("note") else ""
            print(f"    {row['pointer'] or '/':40} {row['keyword']:22} {row['status']}{note}")


# -- run --------------------------------------------------------------------------------------


@contextmanager
def _endpoint(url: str | None) -> Iterator[Any]:
    from sgflow.execution.sglang_backend import SgflowEndpoint

    if url:
        from sgflow.execution.endpoints import endpoint_for

        yield endpoint_for(url)
        return
    from sgflow.engine.launcher import EngineProcess

    print("starting the embedded engine…", file=sys.stderr)
    with EngineProcess() as engine:
        yield SgflowEndpoint(engine.url)


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return parse_inputs(args.input, args.inputs)
    except ValueError as exc:
        raise SystemExit(f"sgflow run: {exc}") from None


def run_run(args: argparse.Namespace) -> int:
    from sgflow.execution.executor import execute
    from sgflow.programs.compiler import compile_program

    try:
        prog = load_program(args.file)
    except ProgramInvalid as exc:
        for e in exc.errors:
            print(str(e), file=sys.stderr)
        return 1
    ir = compile_program(prog, base_dir=str(Path(args.file).resolve().parent))
    with _endpoint(args.engine) as endpoint:
        if args.inputs_jsonl:
            return _run_batch(ir, endpoint, args)
        result = execute(
            ir, _inputs(args), endpoint, on_event=_live_printer() if args.live else None
        )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        if args.trace:
            _print_trace(result)
        if result.ok:
            print(json.dumps(result.output, indent=2, ensure_ascii=False))
        else:
            print(f"run failed: {json.dumps(result.error, ensure_ascii=False)}", file=sys.stderr)
    return 0 if result.ok else 1


def _live_printer() -> Any:
    """An event sink that writes streamed step text to stderr, a ``step> `` header first."""
    current: list[Any] = [None]

    def on_event(kind: str, data: dict[str, Any]) -> None:
        key = (data.get("step"), data.get("branch"))
        if kind == "step.delta":
            if current[0] != key:
                branch = "" if key[1] is None else f"[{key[1]}]"
                sys.stderr.write(("\n" if current[0] else "") + f"{key[0]}{branch}> ")
                current[0] = key
            sys.stderr.write(str(data.get("text") or ""))
            sys.stderr.flush()
        elif kind == "step.finished" and current[0] is not None:
            sys.stderr.write("\n")
            current[0] = None

    return on_event


def _print_trace(result: Any) -> None:
    print(
        f"{'step':24} {'status':8} {'prompt':>6} {'cached':>6} {'out':>5} {'tries':>5} {'secs':>6}  finish",
        file=sys.stderr,
    )
    for t in result.trace:
        name = t.step if t.branch is None else f"{t.step}[{t.branch}]"
        finish = (
            (t.finish_reason or {}).get("type", "") if isinstance(t.finish_reason, dict) else ""
        )
        print(
            f"{name:24} {t.status:8} {t.prompt_tokens:6} {t.cached_tokens:6} "
            f"{t.completion_tokens:5} {t.attempts:5} {t.latency_s:6.2f}  {finish}",
            file=sys.stderr,
        )
    u = result.usage
    print(
        f"tokens: prompt {u['prompt_tokens']}, cached {u['cached_tokens']}, "
        f"completion {u['completion_tokens']}",
        file=sys.stderr,
    )


def _run_batch(ir: Any, endpoint: Any, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sgflow.execution.executor import execute

    lines = [
        ln for ln in Path(args.inputs_jsonl).read_text(encoding="utf-8").splitlines() if ln.strip()
    ]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(loads(line))
        except ValueError as exc:  # JsonBoundsError: not JSON, or refused
            print(f"{args.inputs_jsonl}: input {number}: {exc}", file=sys.stderr)
            return 2
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    failures = 0
    try:
        with (
            ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool,
            tqdm(total=len(rows), desc=ir.name, unit="run", file=sys.stderr) as bar,
        ):
            for i, result in enumerate(pool.map(lambda r: execute(ir, r, endpoint), rows)):
                failures += 0 if result.ok else 1
                record = {
                    "line": i + 1,
                    "ok": result.ok,
                    "output": result.output,
                    "error": result.error,
                    "usage": result.usage,
                }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                bar.update(1)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"{len(rows) - failures} succeeded, {failures} failed", file=sys.stderr)
    return 0 if failures == 0 else 1
