"""``sgflow submit``, ``sgflow status``, ``sgflow watch``: the API from the command line.

Every command takes ``--api URL`` (default ``$SGFLOW_API_URL``, else
``http://127.0.0.1:8000``) and ``--key KEY`` (default ``$SGFLOW_API_KEY``). Exit codes: 0 the
request (and, when waited for, the run) succeeded; 1 the run failed or was cancelled; 2 a usage
error, an unreachable API or an error answer, printed as ``error: <code>: <message>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

__all__ = ["COMMANDS", "DEFAULT_API_URL", "add_parser", "run"]

DEFAULT_API_URL = "http://127.0.0.1:8000"
COMMANDS = ("submit", "status", "watch")
_FINAL = ("succeeded", "failed", "cancelled")


class CliError(Exception):
    """A failure reported with exit code 2: ``code`` (the API's, or ``cli.*``) and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")


def add_parser(subparsers: Any) -> None:
    """Add ``submit``, ``status`` and ``watch`` to the ``sgflow`` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        default=os.environ.get("SGFLOW_API_URL", DEFAULT_API_URL),
        help=f"the API (default: $SGFLOW_API_URL, else {DEFAULT_API_URL})",
    )
    common.add_argument(
        "--key", default=os.environ.get("SGFLOW_API_KEY"), help="API key (default $SGFLOW_API_KEY)"
    )
    p = subparsers.add_parser("submit", parents=[common], help="submit a run")
    p.add_argument("program", help="name@version, or a .yaml/.json file with an inline program")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="K=V",
        help="an input (V is read as JSON when it parses, else as a string); repeatable",
    )
    p.add_argument("--inputs", metavar="FILE", help="a JSON file with the inputs object")
    p.add_argument("--priority", type=int, default=0, help="0..9 (default 0)")
    p.add_argument("--wait", action="store_true", help="wait for the run and print its output")
    p.add_argument("--timeout", type=float, default=600, help="seconds --wait waits (default 600)")
    p = subparsers.add_parser("status", parents=[common], help="show a run")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true", help="print the run as JSON")
    p = subparsers.add_parser("watch", parents=[common], help="follow a run's steps live")
    p.add_argument("run_id")


def run(args: argparse.Namespace) -> int:
    """Run one of :data:`COMMANDS`; returns the exit code."""
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    try:
        with httpx.Client(base_url=args.api, headers=headers, timeout=30) as client:
            if args.command == "submit":
                return _submit(client, args)
            if args.command == "status":
                return _status(client, args.run_id, as_json=args.json)
            return _watch(client, args.run_id)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"error: cli.unreachable: {args.api}: {exc}", file=sys.stderr)
        return 2


def _submit(client: httpx.Client, args: argparse.Namespace) -> int:
    body = {
        "program": _program(args.program),
        "inputs": _inputs(args.input, args.inputs),
        "priority": args.priority,
    }
    run = _check(client.post("/v1/runs", json=body))
    if not args.wait:
        print(run["id"])
        return 0
    deadline = time.monotonic() + args.timeout
    while run["status"] not in _FINAL:
        if time.monotonic() > deadline:
            raise CliError("cli.timeout", f"run {run['id']} is still {run['status']}")
        time.sleep(0.25)
        run = _check(client.get(f"/v1/runs/{run['id']}"))
    return _report(run)


def _status(client: httpx.Client, run_id: str, *, as_json: bool) -> int:
    run = _check(client.get(f"/v1/runs/{run_id}"))
    if as_json:
        print(json.dumps(run, indent=2))
        return 1 if run["status"] in ("failed", "cancelled") else 0
    print(f"{run['id']}  {run['status']}  {run['program']}  attempt {run['attempt']}")
    for step in run.get("trace") or []:
        print(f"  {_step_line(step['step'], step)}")
    return _report(run) if run["status"] in _FINAL else 0


def _watch(client: httpx.Client, run_id: str) -> int:
    """Print each step as it starts and finishes; reconnects with ``Last-Event-ID``."""
    for kind, data in _events(client, run_id):
        if kind == "step.started":
            print(f"{data.get('step')}{_branch(data)}: started", flush=True)
        elif kind == "step.finished":
            print(_step_line(f"{data.get('step')}{_branch(data)}", data), flush=True)
        elif kind in ("run.started", "run.requeued", "run.resumed"):
            print(f"{kind.removeprefix('run.')} (attempt {data.get('attempt', '?')})", flush=True)
        elif kind == "run.finished":
            break
    return _report(_check(client.get(f"/v1/runs/{run_id}")))


def _events(client: httpx.Client, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    last_id: str | None = None
    for _ in range(100):  # reconnects
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with client.stream(
                "GET", f"/v1/runs/{run_id}/events", headers=headers, timeout=60
            ) as response:
                if response.status_code != 200:
                    response.read()
                    _check(response)
                event: dict[str, str] = {}
                for line in response.iter_lines():
                    if line == "" and "event" in event:
                        last_id = event.get("id", last_id)
                        yield event["event"], json.loads(event.get("data") or "{}")
                        if event["event"] == "run.finished":
                            return
                        event = {}
                    elif ": " in line and not line.startswith(":"):
                        field, value = line.split(": ", 1)
                        event[field] = value
        except (httpx.ReadTimeout, httpx.RemoteProtocolError):
            continue
        run = _check(client.get(f"/v1/runs/{run_id}"))
        if run["status"] in _FINAL:
            return
    raise CliError("cli.stream", f"the event stream of {run_id} kept breaking")


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


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code < 400:
        body: dict[str, Any] = response.json()
        return body
    try:
        error = response.json()["error"]
        raise CliError(str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        raise CliError(f"http.{response.status_code}", response.text[:200]) from None


def _program(ref: str) -> Any:
    path = Path(ref)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            return yaml.safe_load(path.read_text())  # JSON is YAML
        except (OSError, yaml.YAMLError) as exc:
            raise CliError("cli.program", f"cannot read {ref}: {exc}") from None
    return ref


def _inputs(pairs: list[str], file: str | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if file:
        try:
            loaded = json.loads(Path(file).read_text())
        except (OSError, ValueError) as exc:
            raise CliError("cli.inputs", f"cannot read {file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise CliError("cli.inputs", f"{file} must hold a JSON object")
        inputs.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError("cli.inputs", f"--input {pair!r} is not K=V")
        try:
            inputs[key] = json.loads(value)
        except ValueError:
            inputs[key] = value
    return inputs
