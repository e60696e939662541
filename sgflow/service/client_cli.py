"""``sgflow submit``, ``status``, ``watch``, ``batch``: the API from the command line.

A thin layer over :class:`sgflow.client.Client`.

Every command takes ``--api URL`` (default ``$SGFLOW_API_URL``, else
``http://127.0.0.1:8000``) and ``--key KEY`` (default ``$SGFLOW_API_KEY``). Exit codes: 0 the
request (and, when waited for, the run or every batch line) succeeded; 1 the run (or a batch
line) failed or was cancelled; 2 a usage error, an unreachable API or an error answer, printed as ``error: <code>: <message>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from tqdm import tqdm

from sgflow.cli_inputs import parse_inputs
from sgflow.client import BATCH_FINAL, DEFAULT_API_URL, RUN_FINAL, ApiError, Client
from sgflow.jsonbounds import load_yaml, loads
from sgflow.settings import Settings

__all__ = ["COMMANDS", "DEFAULT_API_URL", "add_parser", "run"]

COMMANDS = ("submit", "status", "watch", "batch")


class CliError(Exception):
    """A failure reported with exit code 2: ``code`` (the API's, or ``cli.*``) and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")


def add_parser(subparsers: Any) -> None:
    """Add :data:`COMMANDS` to the ``sgflow`` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api", default=None, help=f"the API (default: $SGFLOW_API_URL, else {DEFAULT_API_URL})"
    )
    common.add_argument("--key", default=None, help="API key (default $SGFLOW_API_KEY)")
    p = subparsers.add_parser("submit", parents=[common], help="submit a run")
    p.add_argument("program", help="name@version, or a .yaml/.json file with an inline program")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="K=V",
        help="an input: K=V (a string), K=@FILE (a file's text), K:=JSON; repeatable",
    )
    p.add_argument("--inputs", metavar="FILE", help="a JSON file with the inputs object")
    p.add_argument("--priority", type=int, default=0, help="0..9 (default 0)")
    p.add_argument(
        "--deadline-s",
        type=float,
        help="seconds the run has to finish, else it fails with run.deadline_exceeded",
    )
    p.add_argument("--wait", action="store_true", help="wait for the run and print its output")
    p.add_argument("--timeout", type=float, default=600, help="seconds --wait waits (default 600)")
    p = subparsers.add_parser("status", parents=[common], help="show a run")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true", help="print the run as JSON")
    p = subparsers.add_parser("watch", parents=[common], help="follow a run's steps live")
    p.add_argument("run_id")
    p.add_argument("--no-text", action="store_true", help="do not print the generated text")
    p = subparsers.add_parser("batch", parents=[common], help="run a program over JSONL inputs")
    p.add_argument("program", help="name@version, or a .yaml/.json file with an inline program")
    p.add_argument(
        "--inputs-jsonl",
        required=True,
        metavar="FILE",
        help='lines {"custom_id", "inputs"}; custom_id defaults to line-<n>',
    )
    p.add_argument("--out", metavar="FILE", help="write the results JSONL here (default stdout)")
    p.add_argument("--deadline-s", type=float, help="lines not done by then expire")
    p.add_argument("--poll-s", type=float, default=0.5, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Run one of :data:`COMMANDS`; returns the exit code. ``--api`` and ``--key`` default to
    the settings' ``api_url`` and ``api_key`` (``SGFLOW_API_URL``, ``SGFLOW_API_KEY``)."""
    if args.api is None or args.key is None:
        settings = Settings()
        args.api = args.api or settings.api_url
        if args.key is None and settings.api_key is not None:
            args.key = settings.api_key.get_secret_value()
    try:
        with Client(args.api, args.key or "", timeout=30) as client:
            if args.command == "submit":
                return _submit(client, args)
            if args.command == "status":
                return _status(client, args.run_id, as_json=args.json)
            if args.command == "batch":
                return _batch(client, args)
            return _watch(client, args.run_id, text=not args.no_text)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"error: cli.unreachable: {args.api}: {exc}", file=sys.stderr)
        return 2


def _submit(client: Client, args: argparse.Namespace) -> int:
    inputs = _inputs(args.input, args.inputs)
    run = client.submit(
        _program(args.program), inputs, priority=args.priority, deadline_s=args.deadline_s
    )
    if not args.wait:
        print(run["id"])
        return 0
    try:
        return _report(client.wait(run["id"], timeout=args.timeout, poll_s=0.25))
    except TimeoutError as exc:
        raise CliError("cli.timeout", str(exc)) from None


def _status(client: Client, run_id: str, *, as_json: bool) -> int:
    run = client.get_run(run_id)
    if as_json:
        print(json.dumps(run, indent=2))
        return 1 if run["status"] in ("failed", "cancelled") else 0
    print(f"{run['id']}  {run['status']}  {run['program']}  attempt {run['attempt']}")
    for step in run.get("trace") or []:
        print(f"  {_step_line(step['step'], step)}")
    return _report(run) if run["status"] in RUN_FINAL else 0


def _watch(client: Client, run_id: str, *, text: bool = True) -> int:
    """Print each step as it starts and finishes and, with ``text``, the text it generates as
    it comes (``step.delta``, on stderr); reconnects with ``Last-Event-ID``."""
    live = _LiveText()
    for event in client.events(run_id):
        kind, data = event.kind, event.data
        if kind == "step.delta":
            if text:
                live.write(f"{data.get('step')}{_branch(data)}", str(data.get("text") or ""))
            continue
        live.end()
        if kind == "step.started":
            print(f"{data.get('step')}{_branch(data)}: started", flush=True)
        elif kind == "step.finished":
            print(_step_line(f"{data.get('step')}{_branch(data)}", data), flush=True)
        elif kind in ("run.started", "run.requeued", "run.resumed"):
            print(f"{kind.removeprefix('run.')} (attempt {data.get('attempt', '?')})", flush=True)
    live.end()
    return _report(client.get_run(run_id))


class _LiveText:
    """Streamed step text on stderr (stdout stays the step lines and the output, for
    scripts): a ``name> `` header when another step's text starts, then the text as it
    arrives; :meth:`end` closes the line before other output."""

    def __init__(self) -> None:
        self.current: str | None = None

    def write(self, name: str, text: str) -> None:
        if name != self.current:
            self.end()
            sys.stderr.write(f"{name}> ")
            self.current = name
        sys.stderr.write(text)
        sys.stderr.flush()

    def end(self) -> None:
        if self.current is not None:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.current = None


def _batch(client: Client, args: argparse.Namespace) -> int:
    """Create the batch, show its progress until it is final, write its results."""
    lines = _jsonl_lines(args.inputs_jsonl)
    batch = client.create_batch(_program(args.program), lines, deadline_s=args.deadline_s)
    with tqdm(total=len(lines), unit="line", file=sys.stderr, disable=None) as bar:
        while True:
            counts = batch.get("request_counts") or {}
            bar.update(int(counts.get("completed", 0)) + int(counts.get("failed", 0)) - bar.n)
            if batch["status"] in BATCH_FINAL:
                break
            time.sleep(args.poll_s)
            batch = client.get_batch(batch["id"])
    rows = client.batch_results(batch["id"])
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    ok = batch["status"] == "completed" and all(r["status"] == "succeeded" for r in rows)
    return 0 if ok else 1


def _jsonl_lines(file: str) -> list[dict[str, Any]]:
    """The lines ``{"custom_id", "inputs"}`` of ``file``; ``custom_id`` defaults to
    ``line-<n>`` (``n`` the line number, from 1)."""
    try:
        text = Path(file).read_text()
    except OSError as exc:
        raise CliError("cli.inputs", f"cannot read {file}: {exc}") from None
    lines: list[dict[str, Any]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = loads(raw)
        except ValueError as exc:
            raise CliError("cli.inputs", f"{file}:{number}: {exc}") from None
        if not isinstance(line, dict) or not isinstance(line.get("inputs"), dict):
            raise CliError("cli.inputs", f'{file}:{number}: not {{"custom_id", "inputs": {{...}}}}')
        lines.append({**line, "custom_id": line.get("custom_id") or f"line-{number}"})
    if not lines:
        raise CliError("cli.inputs", f"{file} has no lines")
    return lines


def _step_line(name: str, data: dict[str, Any]) -> str:
    usage = data.get("usage") or data
    tokens = ", ".join(
        f"{label} {usage.get(field) or 0}"
        for label, field in (
            ("prompt", "prompt_tokens"),
            ("cached", "cached_tokens"),
            ("completion", "completion_tokens"),
        )
    )
    latency = data.get("latency_s")
    took = f", {latency:.2f}s" if isinstance(latency, int | float) else ""
    return f"{name}: {data.get('status') or 'finished'} ({tokens} tokens{took})"


def _branch(data: dict[str, Any]) -> str:
    return f"[{data['branch']}]" if data.get("branch") is not None else ""


def _report(run: dict[str, Any]) -> int:
    """Print a finished run's output (stdout) or error (stderr); 0 only if it succeeded."""
    if run["status"] == "succeeded":
        print(json.dumps(run.get("output"), indent=2))
        return 0
    error = run.get("error") or {}
    print(
        f"run {run['id']} {run['status']}: {error.get('code', run['status'])}: "
        f"{error.get('message', '')}",
        file=sys.stderr,
    )
    return 1


def _program(ref: str) -> Any:
    path = Path(ref)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            return load_yaml(path.read_text())[0]  # JSON is YAML; bounded like the API
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise CliError("cli.program", f"cannot read {ref}: {exc}") from None
    return ref


def _inputs(pairs: list[str], file: str | None) -> dict[str, Any]:
    try:
        return parse_inputs(pairs, file)
    except ValueError as exc:
        raise CliError("cli.inputs", str(exc)) from None
