"""Runs through real Celery worker processes on real Redis against the real engine:
completion with ordered events, duplicate delivery, ``kill -9`` of a worker mid-run (another
worker resumes after the checkpointed steps), cancellation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from sgflow.programs.checker import parse_program
from sgflow.programs.compiler import program_hash
from sgflow.store import ProgramBodies, Run, RunStore
from sgflow.workers.celery_app import TASK_RUN, make_celery, queue_name

pytestmark = pytest.mark.engine

LIBRARY = Path(__file__).parents[2] / "sgflow" / "programs" / "library"
REDIS_URL = os.environ.get("SGFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
LEASE_S = 3


class Cluster:
    """A prefix and queue of its own on the shared Redis, and worker processes."""

    def __init__(self, engine_url: str) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.prefix = f"sgflow-test-{self.tag}:"
        self.queue = queue_name(self.prefix)
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.store = RunStore(self.redis, prefix=self.prefix, lease_s=LEASE_S, max_attempts=3)
        self.bodies = ProgramBodies(self.redis, prefix=self.prefix)
        self.celery = make_celery(REDIS_URL, visibility_timeout_s=3600, hard_time_limit_s=600)
        self.env = {
            **os.environ,
            "REDIS_URL": REDIS_URL,
            "SGFLOW_ENGINE_URLS": engine_url,
            "SGFLOW_PREFIX": self.prefix,
            "SGFLOW_LEASE_S": str(LEASE_S),
            "SGFLOW_CELERY_HARD_TIME_LIMIT_S": "600",
        }
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = open(f"/tmp/{self.queue}-worker{len(self.workers)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "sgflow.cli", "worker", "--concurrency", "1"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)
        return proc

    def submit(self, program: str, inputs: dict[str, Any]) -> str:
        text = (LIBRARY / f"{program}.yaml").read_text()
        prog, errors = parse_program(text)
        assert prog is not None, errors
        body = prog.model_dump(mode="json", by_alias=True, exclude_none=True)
        digest = program_hash(prog)
        self.bodies.put(digest, body)
        run_id = uuid.uuid4().hex
        self.store.create(
            run_id=run_id, tenant="t1", program=f"{program}@1", program_hash=digest, inputs=inputs
        )
        self.send(run_id)
        return run_id

    def send(self, run_id: str) -> None:
        self.celery.send_task(TASK_RUN, args=[run_id], queue=self.queue)

    def wait(self, run_id: str, statuses: tuple[str, ...], timeout: float = 240) -> Run:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.store.get(run_id)
            if run is not None and run.status in statuses:
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} not in {statuses}: {self.store.get(run_id)}")

    def events(self, run_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        return self.store.read_events(run_id, after_id="0-0", count=1000)

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        keys = list(self.redis.scan_iter(f"{self.prefix}*"))
        keys += list(self.redis.scan_iter(f"*{self.queue}*"))
        if keys:
            self.redis.delete(*keys)


@pytest.fixture
def cluster(engine_url: str) -> Iterator[Cluster]:
    c = Cluster(engine_url)
    try:
        yield c
    finally:
        c.close()


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((LIBRARY / "samples" / f"{name}.json").read_text()))


def test_a_run_completes_with_ordered_events(cluster: Cluster) -> None:
    cluster.start_worker()
    run_id = cluster.submit("ticket-triage", sample("ticket-triage"))
    run = cluster.wait(run_id, ("succeeded", "failed"))
    assert run.status == "succeeded", run.error
    assert run.output["output"]["team"] in (
        "payments",
        "engineering",
        "identity",
        "product",
        "support",
    )
    kinds = [kind for _, kind, _ in cluster.events(run_id)]
    assert kinds[0] == "run.queued" and kinds[1] == "run.started" and kinds[-1] == "run.finished"
    steps = [d["step"] for _, k, d in cluster.events(run_id) if k == "step.finished"]
    assert steps == ["category", "urgency", "team", "reply"]


def test_the_same_message_delivered_twice_yields_one_result(cluster: Cluster) -> None:
    cluster.start_worker()
    run_id = cluster.submit("sql-generate", sample("sql-generate"))
    cluster.send(run_id)  # a duplicate delivery of the same task message
    run = cluster.wait(run_id, ("succeeded", "failed"))
    time.sleep(2)  # give the duplicate time to be processed
    assert run.status == "succeeded", run.error
    kinds = [kind for _, kind, _ in cluster.events(run_id)]
    assert kinds.count("run.finished") == 1
    assert kinds.count("run.started") == 1
    assert cluster.store.get(run_id).attempt == 1  # type: ignore[union-attr]


def test_kill_9_mid_run_another_worker_resumes_without_recomputing(cluster: Cluster) -> None:
    victim = cluster.start_worker()
    run_id = cluster.submit("resume-parse", sample("resume-parse"))
    deadline = time.monotonic() + 300  # a bound for a loaded machine, not a measure
    while time.monotonic() < deadline:
        if any(k == "step.finished" for _, k, _ in cluster.events(run_id)):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the first step never finished")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    first_steps = {d["step"] for _, k, d in cluster.events(run_id) if k == "step.finished"}
    cluster.start_worker()  # its reaper requeues the run once the lease expires
    run = cluster.wait(run_id, ("succeeded", "failed"), timeout=300)
    assert run.status == "succeeded", run.error
    assert run.attempt == 2
    trace = {t["step"]: t for t in run.output["trace"]}
    for step in first_steps:
        assert trace[step]["status"] == "resumed", trace[step]
    finished = [d["step"] for _, k, d in cluster.events(run_id) if k == "step.finished"]
    assert len(finished) == len(set(finished)), finished  # no step finished twice
    kinds = [k for _, k, _ in cluster.events(run_id)]
    assert kinds.count("run.finished") == 1


def test_cancel_a_running_run(cluster: Cluster) -> None:
    cluster.start_worker()
    run_id = cluster.submit("resume-parse", sample("resume-parse"))
    cluster.wait(run_id, ("running",))
    cluster.store.request_cancel(run_id)
    run = cluster.wait(run_id, ("cancelled", "succeeded", "failed"), timeout=120)
    assert run.status == "cancelled", (run.status, run.error)
