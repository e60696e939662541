"""``sgflow submit / status / watch`` against the real API, a real Celery worker process, real
Redis and the real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sgflow.cli import main
from tests.service.stack import Stack

pytestmark = pytest.mark.engine

LIBRARY = Path(__file__).parents[2] / "sgflow" / "programs" / "library"
STEPS = ["category", "urgency", "team", "reply"]


@pytest.fixture
def inputs_file(tmp_path: Path) -> str:
    path = tmp_path / "inputs.json"
    path.write_text((LIBRARY / "samples" / "ticket-triage.json").read_text())
    return str(path)


def test_submit_inline_program_and_wait(
    stack: Stack, inputs_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    program = str(LIBRARY / "ticket-triage.yaml")
    code = main(["submit", program, "--inputs", inputs_file, "--wait", *stack.acme_cli])
    out, err = capsys.readouterr()
    assert code == 0, err
    output = json.loads(out)
    assert output["urgency"] in ("low", "medium", "high")


def test_submit_then_watch_prints_each_step(
    stack: Stack, inputs_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    program = str(LIBRARY / "ticket-triage.yaml")
    assert main(["submit", program, "--inputs", inputs_file, *stack.acme_cli]) == 0
    run_id = capsys.readouterr().out.strip()
    assert len(run_id) == 32

    code = main(["watch", run_id, *stack.acme_cli])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    for step in STEPS:
        assert f"{step}: started" in lines
        finished = next(line for line in lines if line.startswith(f"{step}: ok"))
        assert "prompt " in finished and "completion " in finished and finished.endswith("s)")
    started = [line.split(":")[0] for line in lines if line.endswith(": started")]
    assert started == STEPS
    assert json.loads(out[out.index("{") :])["urgency"] in ("low", "medium", "high")

    assert main(["status", run_id, "--json", *stack.acme_cli]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    assert main(["status", run_id, *stack.acme_cli]) == 0
    assert f"{run_id}  succeeded  inline" in capsys.readouterr().out


def test_errors_exit_2_with_the_api_code(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "nope", *stack.acme_cli]) == 2
    assert "error: run.not_found: there is no run nope" in capsys.readouterr().err
    assert main(["submit", "missing@1", *stack.acme_cli]) == 2
    assert "error: program." in capsys.readouterr().err
    assert main(["status", "nope", "--api", stack.url, "--key", "bad"]) == 2
    assert "error: auth." in capsys.readouterr().err
    assert main(["submit", "x@1", "--input", "novalue", *stack.acme_cli]) == 2
    assert "cli.inputs" in capsys.readouterr().err
