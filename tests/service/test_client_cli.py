"""``sgflow submit / status / watch`` against the real API, a real Celery worker process, real
Redis and the real engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sgflow.cli import main
from sgflow.engine.launcher import EngineProcess
from sgflow.service import KeyStore, Settings, create_app
from tests.service.conftest import REDIS_URL, ServerThread

pytestmark = pytest.mark.engine

LIBRARY = Path(__file__).parents[2] / "sgflow" / "programs" / "library"
STEPS = ["category", "urgency", "team", "reply"]


class Stack:
    """A worker subprocess and the API on a prefix of their own; ``api`` is the CLI's
    ``--api``/``--key`` arguments for tenant ``acme``."""

    def __init__(self, engine_url: str) -> None:
        self.prefix = f"sgflow-test-{uuid.uuid4().hex[:10]}:"
        self.redis = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        env = {
            **os.environ,
            "REDIS_URL": REDIS_URL,
            "SGFLOW_PREFIX": self.prefix,
            "SGFLOW_ENGINE_URL": engine_url,
            "SGFLOW_LEASE_S": "5",
        }
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "sgflow.cli", "worker", "--concurrency", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        settings = Settings(redis_url=REDIS_URL, redis_prefix=self.prefix, engine_urls=[engine_url])
        self.server = ServerThread(create_app(settings))
        self.url = self.server.__enter__()
        secret = KeyStore(self.redis, prefix=self.prefix).create_key("acme")[1]
        self.api = ["--api", self.url, "--key", secret]

    def close(self) -> None:
        self.server.__exit__()
        self.worker.terminate()
        try:
            self.worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.worker.kill()
        for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            self.redis.delete(key)


@pytest.fixture(scope="module")
def stack(engine: EngineProcess) -> Iterator[Stack]:
    s = Stack(engine.url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def inputs_file(tmp_path: Path) -> str:
    path = tmp_path / "inputs.json"
    path.write_text((LIBRARY / "samples" / "ticket-triage.json").read_text())
    return str(path)


def test_submit_inline_program_and_wait(
    stack: Stack, inputs_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    program = str(LIBRARY / "ticket-triage.yaml")
    code = main(["submit", program, "--inputs", inputs_file, "--wait", *stack.api])
    out, err = capsys.readouterr()
    assert code == 0, err
    output = json.loads(out)
    assert output["urgency"] in ("low", "medium", "high")


def test_submit_then_watch_prints_each_step(
    stack: Stack, inputs_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    program = str(LIBRARY / "ticket-triage.yaml")
    assert main(["submit", program, "--inputs", inputs_file, *stack.api]) == 0
    run_id = capsys.readouterr().out.strip()
    assert len(run_id) == 32

    code = main(["watch", run_id, *stack.api])
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

    assert main(["status", run_id, "--json", *stack.api]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    assert main(["status", run_id, *stack.api]) == 0
    assert f"{run_id}  succeeded  inline" in capsys.readouterr().out


def test_errors_exit_2_with_the_api_code(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "nope", *stack.api]) == 2
    assert "error: run.not_found: there is no run nope" in capsys.readouterr().err
    assert main(["submit", "missing@1", *stack.api]) == 2
    assert "error: program." in capsys.readouterr().err
    assert main(["status", "nope", "--api", stack.url, "--key", "bad"]) == 2
    assert "error: auth." in capsys.readouterr().err
    assert main(["submit", "x@1", "--input", "novalue", *stack.api]) == 2
    assert "cli.inputs" in capsys.readouterr().err
