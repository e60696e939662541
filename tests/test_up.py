"""``sgflow up`` as a user runs it: real processes, real HTTP, Ctrl-C (SIGINT) to stop.

- one engine with the embedded Valkey (what ``make run`` starts), and
- ``--replicas 2``: two engines behind sglang-router (cache_aware): two runs of a program
  with a long static system prompt land on the replica that cached it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
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
    key = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # the banner ends with "stop: Ctrl-C"
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        log.append(line)
        found = KEY.search(line)
        key = found.group(1) if found else key
        if "stop: Ctrl-C" in line:
            break
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
