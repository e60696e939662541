"""A real ``sgflow worker`` reads the one Settings: the API's engine variable, Celery's
settings by their documented names, the deprecated names (with a warning), the refusal of an
unsafe time limit, and the hard time limit enforced on a long generation (real engine, real
Redis, real worker processes)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sgflow.programs.checker import parse_program
from sgflow.programs.compiler import program_hash
from tests.workers.test_worker_e2e import REDIS_URL, Cluster

pytestmark = pytest.mark.engine

SHORT = "program: short\nsteps:\n  - id: a\n    user: Say hi.\n    gen: {max_tokens: 4}\n"
LONG = (
    "program: essay\nsteps:\n  - id: long\n    user: Write a long, detailed essay about the "
    "history of the Roman Empire, with many sections.\n    gen: {max_tokens: 2000}\n"
)


def base_env(prefix: str) -> dict[str, str]:
    """The test's environment without any sgflow setting, plus Redis and a prefix."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("SGFLOW_") and k.upper() != "REDIS_URL"
    }
    return {**env, "REDIS_URL": REDIS_URL, "SGFLOW_PREFIX": prefix, "SGFLOW_LEASE_S": "3"}


class Workers(Cluster):
    """:class:`Cluster` whose workers get exactly the environment a test gives them."""

    def __init__(self, engine_url: str, tmp: Path) -> None:
        super().__init__(engine_url)
        self.tmp = tmp

    def start(self, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self.tmp / f"worker{len(self.workers)}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sgflow.cli", "worker", "--concurrency", "1"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.workers.append(proc)
        return proc, log_path

    def submit_text(self, text: str) -> str:
        prog, errors = parse_program(text)
        assert prog is not None, errors
        digest = program_hash(prog)
        self.bodies.put(digest, prog.model_dump(mode="json", by_alias=True, exclude_none=True))
        run_id = uuid.uuid4().hex
        self.store.create(
            run_id=run_id, tenant="t1", program=f"{prog.program}@1", program_hash=digest, inputs={}
        )
        self.send(run_id)
        return run_id


@pytest.fixture
def workers(engine_url: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(engine_url, tmp_path)
    try:
        yield w
    finally:
        w.close()


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):  # a line cut by a write
                lines.append(json.loads(raw))
    return lines


def wait_for_log(path: Path, message: str, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in log_lines(path):
            if line.get("msg") == message:
                return line
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"no {message!r} in the worker's log:\n{path.read_text()[-3000:]}")


def test_a_worker_with_only_the_apis_engine_variable_runs_against_that_engine(
    workers: Workers, engine_url: str
) -> None:
    """Before: workers read SGFLOW_ENGINE_URL only, so a worker given the API's
    SGFLOW_ENGINE_URLS called 127.0.0.1:30000 and every run failed engine.unavailable. Its
    SGFLOW_CELERY_* variables reach Celery's configuration."""
    env = base_env(workers.prefix) | {
        "SGFLOW_ENGINE_URLS": engine_url,
        "SGFLOW_CELERY_VISIBILITY_TIMEOUT_S": "4000",
        "SGFLOW_CELERY_HARD_TIME_LIMIT_S": "1000",
    }
    assert "SGFLOW_ENGINE_URL" not in env
    proc, log = workers.start(env)
    config = wait_for_log(log, "worker configuration", proc)
    assert config["engines"] == [engine_url]
    assert config["prefix"] == workers.prefix
    assert config["time_limit_s"] == 1000
    celery = config["celery"]
    assert celery["visibility_timeout"] == 4000
    assert celery["task_time_limit"] == 2500  # the prefork backstop, halfway to redelivery
    assert celery["queue"] == f"{workers.prefix}runs"
    run = workers.wait(workers.submit_text(SHORT), ("succeeded", "failed"), timeout=120)
    assert run.status == "succeeded", run.error
    assert not [line for line in log_lines(log) if "deprecated" in str(line.get("msg"))]


def test_the_deprecated_names_still_work_and_warn_naming_the_new_ones(
    workers: Workers, engine_url: str
) -> None:
    env = base_env(workers.prefix) | {
        "SGFLOW_ENGINE_URL": engine_url,
        "SGFLOW_VISIBILITY_TIMEOUT_S": "4000",
        "SGFLOW_HARD_TIME_LIMIT_S": "900",
    }
    proc, log = workers.start(env)
    config = wait_for_log(log, "worker configuration", proc)
    assert config["engines"] == [engine_url]
    assert (config["celery"]["visibility_timeout"], config["time_limit_s"]) == (4000, 900)
    warnings = {line["msg"] for line in log_lines(log) if line.get("level") == "warning"}
    assert {
        "SGFLOW_ENGINE_URL is deprecated: set SGFLOW_ENGINE_URLS instead",
        "SGFLOW_VISIBILITY_TIMEOUT_S is deprecated: set SGFLOW_CELERY_VISIBILITY_TIMEOUT_S instead",
        "SGFLOW_HARD_TIME_LIMIT_S is deprecated: set SGFLOW_CELERY_HARD_TIME_LIMIT_S instead",
    } <= warnings
    deprecations = [line for line in log_lines(log) if "deprecated" in str(line.get("msg"))]
    assert len(deprecations) == 3  # once each
    run = workers.wait(workers.submit_text(SHORT), ("succeeded", "failed"), timeout=120)
    assert run.status == "succeeded", run.error


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        (
            {
                "SGFLOW_CELERY_HARD_TIME_LIMIT_S": "3600",
                "SGFLOW_CELERY_VISIBILITY_TIMEOUT_S": "600",
            },
            "SGFLOW_CELERY_HARD_TIME_LIMIT_S=3600) must be below celery_visibility_timeout_s "
            "(SGFLOW_CELERY_VISIBILITY_TIMEOUT_S=600)",
        ),
        (
            {"SGFLOW_HARD_TIME_LIMIT_S": "5000"},  # a deprecated name, above the default 3600
            "SGFLOW_CELERY_HARD_TIME_LIMIT_S=5000) must be below",
        ),
        ({"REDIS_URL": ""}, "sgflow worker: no Redis: set REDIS_URL"),
    ],
)
def test_the_worker_refuses_to_start_on_an_unsafe_configuration(
    tmp_path: Path, variables: dict[str, str], named: str
) -> None:
    """Before: the visibility check ran only in the API; a worker started with a hard
    limit above the visibility timeout ran, and Redis redelivered its long tasks."""
    env = base_env(f"sgflow-test-{uuid.uuid4().hex[:8]}:") | variables
    env = {k: v for k, v in env.items() if v != ""}
    done = subprocess.run(
        [sys.executable, "-m", "sgflow.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr


def test_the_hard_time_limit_stops_a_long_generation(workers: Workers, engine_url: str) -> None:
    """Celery's threads pool ignores task_time_limit; the runner's watchdog fails the run with
    run.time_limit at the limit and the generation stops (the engine goes idle)."""
    env = base_env(workers.prefix) | {
        "SGFLOW_ENGINE_URLS": engine_url,
        "SGFLOW_CELERY_HARD_TIME_LIMIT_S": "5",
    }
    proc, log = workers.start(env)
    wait_for_log(log, "worker configuration", proc)
    run_id = workers.submit_text(LONG)
    run = workers.wait(run_id, ("succeeded", "failed"), timeout=120)
    assert run.status == "failed", run.output
    assert run.error is not None and run.error["code"] == "run.time_limit", run.error
    assert run.error["limit"] == 5
    events = workers.events(run_id)
    assert [k for _, k, _ in events].count("run.finished") == 1
    # 2000 tokens take minutes here; the worker's thread stops the stream at its next delta
    assert engine_idle(engine_url, within_s=30), "the generation went on after the time limit"
    finished = [k for _, k, _ in workers.events(run_id)]
    assert finished.count("run.finished") == 1 and finished[-1] == "run.finished"
    stopped = wait_for_log(log, "run stopped at the hard time limit", proc)
    assert stopped["run_id"] == run_id and stopped["limit_s"] == 5
    # the task returned: the worker's slot is free again
    done = wait_for_log(log, "run task done", proc)
    assert (done["run_id"], done["outcome"]) == (run_id, "time_limit")


def engine_idle(engine_url: str, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        info = httpx.get(f"{engine_url}/server_info", timeout=5).json()
        if info["internal_states"][0]["num_running_reqs"] == 0:
            return True
        time.sleep(0.1)
    return False
