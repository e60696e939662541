"""``sgflow up`` as a user runs it: real processes, real HTTP, Ctrl-C (SIGINT) to stop.

- one engine with the embedded Valkey (what ``make run`` starts), and
- ``--replicas 2``: two engines behind sglang-router (cache_aware): two runs of a program
  with a long static system prompt land on the replica that cached it;
- supervision: ``kill -9`` of the worker, then of the engine, under ``sgflow up``: ``/readyz``
  says it is down, the child is restarted (a structured log line says so), ``/readyz`` says
  ready again and a run submitted afterwards completes; Ctrl-C still stops everything.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sgflow.engine.launcher import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
KEY = re.compile(r"development API key \(tenant 'dev'\): (\S+)")

SYSTEM = "You answer questions about the Harbour Office from these records only.\n" + "\n".join(
    f"Record {i}: ship {100 + 7 * i} berthed at quay {i % 9} on day {1 + (13 * i) % 28}."
    for i in range(1, 25)
)
PROGRAM = {
    "program": "harbour",
    "version": 1,
    "inputs": {"type": "object", "properties": {"record": {"type": "integer"}}},
    "system": SYSTEM,
    "steps": [
        {
            "id": "quay",
            "user": "At which quay did record {{ inputs.record }} berth? Reply with a digit.",
            "gen": {"regex": "[0-9]", "max_tokens": 2},
        },
        # select scores its choices with a list prompt, which sglang-router refuses (422):
        # SgflowEndpoint sends one request per choice
        {"id": "sure", "user": "Are you sure?", "select": ["yes", "no"]},
    ],
}


class Up:
    def __init__(self, proc: subprocess.Popen[str], api: str, key: str, log: list[str]) -> None:
        self.proc, self.api, self.key, self.log = proc, api, key, log
        self.http = httpx.Client(
            base_url=api, timeout=120, headers={"Authorization": f"Bearer {key}"}
        )

    def records(self, msg: str) -> list[dict[str, Any]]:
        """``sgflow up``'s structured log lines (JSON on stderr) with this message."""
        found = []
        for line in list(self.log):
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("msg") == msg:
                    found.append(record)
        return found

    def pid(self, child: str) -> int:
        """The latest pid of ``child`` (started, or restarted)."""
        pids = [
            r["pid"]
            for r in self.records("child started") + self.records("child restarted")
            if r["child"] == child
        ]
        assert pids, "".join(self.log)
        return int(pids[-1])

    def readyz(self) -> dict[str, Any]:
        try:
            return dict(self.http.get("/readyz", timeout=10).json())
        except httpx.HTTPError as exc:  # the API must keep answering: record, the test fails
            return {"status": "no answer", "failing": [f"{type(exc).__name__}: {exc}"]}

    def poll_readyz(self, until: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        seen: list[Any] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            body = self.readyz()
            assert body["status"] != "no answer", body
            if until(body):
                return body
            seen.append((body["status"], body["failing"]))
            time.sleep(0.2)
        raise AssertionError(f"/readyz never showed {what}; saw {seen[-5:]}\n{''.join(self.log)}")

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        created = self.http.post("/v1/runs", json={"program": PROGRAM, "inputs": inputs})
        assert created.status_code == 202, created.text
        run_id = created.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            run = self.http.get(f"/v1/runs/{run_id}").json()
            if run["status"] not in ("queued", "running"):
                return dict(run)
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not finish")


@contextmanager
def start_up(tmp: Path, *args: str, env: dict[str, str]) -> Iterator[Up]:
    port = free_port()
    argv = [sys.executable, "-m", "sgflow.cli", "up", "--port", str(port)]
    argv += ["--engine-port", "0", "--router-port", "0", "--data-dir", str(tmp / "data"), *args]
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    log: list[str] = []

    def read() -> None:  # all along, so that up's pipe never fills
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    key = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # the banner ends with "stop: Ctrl-C"
        text = "".join(log)
        found = KEY.search(text)
        key = found.group(1) if found else key
        if "stop: Ctrl-C" in text or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert key is not None, "".join(log)
    up = Up(proc, f"http://127.0.0.1:{port}", key, log)
    try:
        yield up
    finally:
        up.http.close()
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(timeout=10)


@pytest.fixture
def prefix_env() -> Iterator[dict[str, str]]:
    import redis

    prefix = f"sgflow-test-up-{uuid.uuid4().hex[:8]}:"
    yield {**os.environ, "REDIS_URL": REDIS_URL, "SGFLOW_PREFIX": prefix}
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)


def test_up_single_engine_with_embedded_valkey(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SGFLOW_PREFIX")}
    with start_up(tmp_path, env=env) as up:
        banner = "".join(up.log)
        assert "embedded Valkey (AOF" in banner and "curl -s" in banner
        run = up.run({"record": 3})
        assert run["status"] == "succeeded", run
        assert re.fullmatch(r"[0-9]", run["output"]["quay"])
        assert run["output"]["sure"] in ("yes", "no")
        assert (tmp_path / "data" / "valkey").is_dir()
    assert up.proc.returncode == 0
    assert "router" not in "".join(up.log)


def test_up_replicas_behind_cache_aware_router(tmp_path: Path, prefix_env: dict[str, str]) -> None:
    with start_up(tmp_path, "--replicas", "2", env=prefix_env) as up:
        banner = "".join(up.log)
        router = re.search(r"sglang-router \(cache_aware\): (\S+)", banner)
        assert router is not None, banner
        workers = httpx.get(f"{router.group(1)}/workers", timeout=10).json()["workers"]
        assert len(workers) == 2 and all(w["is_healthy"] for w in workers)

        first = up.run({"record": 4})
        second = up.run({"record": 11})
        assert first["status"] == second["status"] == "succeeded", (first, second)
        assert second["output"]["sure"] in ("yes", "no")
        prompt = second["trace"][0]["prompt_tokens"]
        cached = second["trace"][0]["cached_tokens"]
        # the ~600-token system prompt was cached by the first run, on the same replica
        assert prompt > 500 and cached >= 0.8 * prompt, second["trace"]
    assert up.proc.returncode == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (killed, not yet reaped by up) counts as dead
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def kill_9_and_watch_it_come_back(up: Up, child: str, check: str) -> None:
    """``kill -9`` ``child``; ``/readyz`` (answering all along) names ``check`` as failing,
    then says ready again; up logs the exit and the restart with a new pid."""
    victim = up.pid(child)
    restarts_before = len([r for r in up.records("child restarted") if r["child"] == child])
    os.kill(victim, signal.SIGKILL)
    up.poll_readyz(lambda b: check in b["failing"], f"{check} failing")
    up.poll_readyz(lambda b: b["status"] == "ready", "ready again")
    exits = [r for r in up.records("child exited; restarting") if r["child"] == child]
    assert exits, "".join(up.log)
    assert exits[-1]["exit_code"] == -signal.SIGKILL
    assert exits[-1]["attempt"] == 1 and exits[-1]["next_delay_s"] == 1.0
    restarted = [r for r in up.records("child restarted") if r["child"] == child]
    assert len(restarted) == restarts_before + 1
    assert restarted[-1]["pid"] != victim and alive(restarted[-1]["pid"])
    assert up.proc.poll() is None  # up itself carried on


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One ``sgflow up`` on the machine's Redis for the supervision tests. A short lease makes
    a worker's announcement expire 3 s after it dies, so /readyz notices within seconds."""
    import redis

    prefix = f"sgflow-test-up-{uuid.uuid4().hex[:8]}:"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SGFLOW_")}
    env |= {"REDIS_URL": REDIS_URL, "SGFLOW_PREFIX": prefix, "SGFLOW_LEASE_S": "2"}
    try:
        with start_up(tmp_path_factory.mktemp("up"), env=env) as up:
            up.poll_readyz(lambda b: b["status"] == "ready", "ready")
            yield up
        assert up.proc.returncode == 0, "".join(up.log)
        # Ctrl-C stopped every child, the restarted ones included
        for record in up.records("child started") + up.records("child restarted"):
            assert not alive(record["pid"]), record
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)


def test_up_restarts_a_killed_worker(supervised: Up) -> None:
    kill_9_and_watch_it_come_back(supervised, "worker0", "workers")
    run = supervised.run({"record": 5})
    assert run["status"] == "succeeded", run


def test_up_restarts_a_killed_engine(supervised: Up) -> None:
    kill_9_and_watch_it_come_back(supervised, "engine0", "engines")
    run = supervised.run({"record": 6})
    assert run["status"] == "succeeded", run
