"""The README's examples, run as written against a real stack (the API on a real socket, a
Celery worker process, real Redis, the real engine), so the docs cannot drift.

A runnable block is marked by an HTML comment on the line before its fence, invisible where
the README is rendered::

    <!-- example: NAME (anything after the name is for readers) -->
    ```bash

Bash blocks run under ``bash -euo pipefail`` from the repository root, with ``curl`` and
``sgflow`` on ``PATH`` as shims that record each call's arguments and output (and make curl
fail on an HTTP error, ``--fail-with-body``) so the test can check every answer. The only
edits to a block are the placeholder values of its ``KEY=`` and ``API=`` lines.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.service.stack import Stack

pytestmark = pytest.mark.engine

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
LIBRARY = ROOT / "sgflow" / "programs" / "library"
MARKER = re.compile(r"^<!-- example: ([\w-]+)\b[^\n]*-->\n```(\w+)\n(.*?)^```$", re.M | re.S)
FINAL = ("succeeded", "failed", "cancelled")
TIMEOUT_S = 600  # a whole block, on the real model with two CPU threads


def examples() -> dict[str, tuple[str, str]]:
    """``{name: (language, code)}`` of the marked blocks of README.md."""
    found: dict[str, tuple[str, str]] = {}
    for match in MARKER.finditer(README.read_text()):
        name, language, code = match.groups()
        assert name not in found, f"two README examples are named {name}"
        found[name] = (language, code)
    return found


def test_the_marked_examples_are_these() -> None:
    """A block that loses its marker (or a new one nobody tests) fails here."""
    assert {name: lang for name, (lang, _) in examples().items()} == {
        "api-curl": "bash",
        "cli": "bash",
        "openai-sdk": "python",
        "python-client": "python",
    }


@dataclass
class Call:
    """One call of a shimmed command: its arguments and its standard output."""

    args: list[str]
    out: str

    def option(self, flag: str) -> list[str]:
        """The values of each ``flag`` (``-H``, ``-d``) in the arguments."""
        return [self.args[i + 1] for i, a in enumerate(self.args[:-1]) if a == flag]

    @property
    def url(self) -> str:
        return next(a for a in self.args if a.startswith("http"))


def shim(bin_dir: Path, name: str, command: list[str]) -> None:
    """``bin_dir/name``: runs ``command`` with the shim's arguments, keeps its exit status
    and records arguments and stdout under ``$README_CALLS`` (numbered in call order)."""
    real = " ".join(f"'{part}'" for part in command)
    script = f"""#!/usr/bin/env bash
set -o pipefail
n=$(($(cat "$README_CALLS/count" 2>/dev/null || echo 0) + 1))
echo "$n" > "$README_CALLS/count"
log=$(printf '%s/%04d-{name}' "$README_CALLS" "$n")
printf '%s\\0' "$@" > "$log.args"
{real} "$@" | tee "$log.out"
"""
    path = bin_dir / name
    path.write_text(script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_bash(code: str, tmp_path: Path, env: dict[str, str], cwd: Path = ROOT) -> list[Call]:
    """Run a bash block as written; its calls of curl and sgflow, in order."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    curl = shutil.which("curl")
    assert curl, "the README examples need curl"
    shim(bin_dir, "curl", [curl, "--fail-with-body"])
    shim(bin_dir, "sgflow", [sys.executable, "-m", "sgflow.cli"])
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=cwd,
        env={
            **os.environ,
            **env,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            "README_CALLS": str(calls),
        },
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return [
        Call(args.read_text().split("\0")[:-1], args.with_suffix(".out").read_text())
        for args in sorted(calls.glob("*.args"))
    ]


def with_placeholders(code: str, **values: str) -> str:
    """``code`` with the value of each ``NAME=placeholder`` line replaced (each must exist)."""
    for name, value in values.items():
        code, n = re.subn(rf"^{name}=\S+", f"{name}={value}", code, count=1, flags=re.M)
        assert n == 1, f"the example no longer sets {name}"
    return code


@pytest.fixture
def ready(stack: Stack) -> None:
    """The stack once ``/readyz`` says so (its worker registered), as after ``sgflow up``."""
    deadline = time.monotonic() + 120
    while (r := stack.acme.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)


def store_program(stack: Stack, name: str) -> None:
    source = (LIBRARY / f"{name}.yaml").read_text()
    r = stack.acme.post("/v1/programs", json={"source": source})
    assert r.status_code in (200, 201), r.text


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event, data)`` of each event of a Server-Sent Events stream."""
    events = []
    for block in re.split(r"\r?\n\r?\n", text):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":"
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.mark.usefixtures("ready")
def test_api_curl(stack: Stack, tmp_path: Path) -> None:
    _, code = examples()["api-curl"]
    calls = run_bash(with_placeholders(code, KEY=stack.acme_key, API=stack.url), tmp_path, {})
    routes = [re.sub(r"/runs/\w+", "/runs/ID", c.url.removeprefix(stack.url)) for c in calls]
    assert routes == [
        "/v1/extract",
        "/v1/programs",
        "/v1/runs",
        "/v1/runs/ID/events",
        "/v1/runs/ID",
        "/v1/runs/ID/cancel",
        "/v1/runs?status=succeeded&limit=20",
    ]
    extract, program, submit, events, run, cancel, listed = calls

    # -d without a Content-Type header: curl sends application/x-www-form-urlencoded, and
    # the body is read as JSON all the same
    for call in (extract, program, submit):
        assert not any(h.lower().startswith("content-type") for h in call.option("-H"))
    schema = json.loads(extract.option("-d")[0])["schema"]
    answer = json.loads(extract.out)
    assert "object" in answer and "run" in answer, answer  # not a 202 past timeout_s
    jsonschema.validate(answer["object"], schema)
    assert answer["run"]["status"] == "succeeded"

    stored = json.loads(program.out)
    assert (stored["name"], stored["version"]) == ("ticket-triage", 1)

    submitted = json.loads(submit.out)
    run_id = submitted["id"]
    assert submitted["status_url"].endswith(f"/v1/runs/{run_id}")
    assert submitted["events_url"].endswith(f"/v1/runs/{run_id}/events")
    assert all(f"/runs/{run_id}" in c.url for c in (events, run, cancel))

    kinds = [kind for kind, _ in sse_events(events.out)]
    assert kinds[0] == "run.queued" and kinds[-1] == "run.finished", kinds
    assert {"step.started", "step.delta", "step.finished"} <= set(kinds), kinds

    final = json.loads(run.out)
    assert final["status"] == "succeeded", final
    assert final["output"]["urgency"] in ("low", "medium", "high")

    answered = json.loads(cancel.out)
    assert answered == {"id": run_id, "cancel": "finished", "status": "succeeded"}

    page = json.loads(listed.out)
    assert run_id in [r["id"] for r in page["data"]]
    assert {r["status"] for r in page["data"]} == {"succeeded"}


@pytest.mark.usefixtures("ready")
def test_cli(stack: Stack, tmp_path: Path) -> None:
    """The block names a user's files: ticket.json, my-program.yaml, questions.jsonl; and
    programs stored as the API example stores them."""
    _, code = examples()["cli"]
    store_program(stack, "ticket-triage")
    store_program(stack, "sql-generate")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(LIBRARY / "samples" / "ticket-triage.json", work / "ticket.json")
    shutil.copy(LIBRARY / "ticket-triage.yaml", work / "my-program.yaml")
    question = json.loads((LIBRARY / "samples" / "sql-generate.json").read_text())
    (work / "questions.jsonl").write_text(json.dumps({"custom_id": "q1", "inputs": question}))
    env = {"SGFLOW_API_URL": stack.url, "SGFLOW_API_KEY": stack.acme_key}

    calls = run_bash(code, tmp_path, env, cwd=work)
    assert [c.args[0] for c in calls] == ["submit", "submit", "watch", "status", "batch"]
    waited, submitted, watched, status, batch = calls

    assert json.loads(waited.out)["urgency"] in ("low", "medium", "high")
    run_id = submitted.out.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", run_id), submitted.out
    assert watched.args[1] == status.args[1] == run_id
    assert "category: started" in watched.out.splitlines()
    assert json.loads(status.out)["status"] == "succeeded"

    assert batch.out == ""  # with --out, the results go to the file
    rows = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
    assert [(r["custom_id"], r["status"]) for r in rows] == [("q1", "succeeded")], rows
    assert rows[0]["output"]


@pytest.mark.usefixtures("ready")
def test_python_client(stack: Stack) -> None:
    _, code = examples()["python-client"]
    store_program(stack, "ticket-triage")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SGFLOW_API_URL": stack.url,
            "SGFLOW_API_KEY": stack.acme_key,
        },
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # an event per line, but a step.delta's text may hold newlines of its own
    kinds = [line.split()[0] for line in lines[:-2] if re.match(r"(run|step)\.\w+ ", line)]
    assert kinds[0] == "run.queued" and kinds[-1] == "run.finished", lines
    assert "step.finished" in kinds
    output = ast.literal_eval(lines[-2])
    assert output["urgency"] in ("low", "medium", "high")
    rows = ast.literal_eval(lines[-1])
    assert [r["custom_id"] for r in rows] == ["a"]
    assert rows[0]["status"] in ("in_progress", *FINAL)


@pytest.mark.usefixtures("ready")
def test_openai_sdk(stack: Stack) -> None:
    _, code = examples()["openai-sdk"]
    store_program(stack, "ticket-triage")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SGFLOW_API_URL": stack.url,
            "SGFLOW_API_KEY": stack.acme_key,
        },
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    parsed, triage = proc.stdout.splitlines()
    fields, run_id = parsed.rsplit(" ", 1)
    assert re.fullmatch(r"category='(billing|bug|account|other)' urgent=(True|False)", fields)
    assert stack.acme.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"
    assert json.loads(triage)["urgency"] in ("low", "medium", "high")
