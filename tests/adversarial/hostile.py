"""A whole sgflow started the way an operator starts it, for attacking from outside: `sgflow
serve` and `sgflow worker` as separate processes (a request that freezes the API must not
freeze the test that sends it), an engine stand-in that answers what workers ask of an engine
before generating, two tenants, and the checks that say the service is still well afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import httpx
import redis
from fastapi import FastAPI

from sgflow.store import KeyStore
from tests.service.conftest import REDIS_URL, ServerThread

__all__ = ["CASE_TIMEOUT_S", "HostileService"]

# The bound each attack must be answered within. A client timeout, not a measurement: a case
# that freezes the API fails; one transient scheduling hiccup on a loaded machine is forgiven
# by one retry (a request that really takes longer times out twice).
CASE_TIMEOUT_S = float(os.environ.get("SGFLOW_ADVERSARIAL_TIMEOUT_S", "1.0"))


def _stand_in_engine() -> FastAPI:
    """What a worker asks of an engine before it generates (model info); generation itself
    is never reached by these cases, and answers 503 if it is."""
    fake = FastAPI()
    info = {"model_path": "stand-in", "served_model_name": "stand-in", "is_generation": True}

    @fake.get("/health")
    def health() -> dict[str, str]:
        return {}

    @fake.get("/get_model_info")
    @fake.get("/model_info")
    def model_info() -> dict[str, Any]:
        return info

    @fake.get("/get_server_info")
    @fake.get("/server_info")
    def server_info() -> dict[str, Any]:
        return {**info, "context_length": 8192}

    return fake


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HostileService:
    """``url``; ``acme``/``globex`` clients (bounded timeouts); ``acme_key``; ``redis``."""

    def __init__(self, **env: str) -> None:
        self.prefix = f"sgflow-adv-{uuid.uuid4().hex[:10]}:"
        self.redis = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        self.engine = ServerThread(_stand_in_engine())
        engine_url = self.engine.__enter__()
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "REDIS_URL": REDIS_URL,
            "SGFLOW_PREFIX": self.prefix,
            "SGFLOW_ENGINE_URLS": engine_url,
            **env,
        }
        # the API logs a JSON line per request on stderr: into a file (a pipe nobody
        # drains fills up and blocks the server), shown when something goes wrong
        self.log = tempfile.NamedTemporaryFile(prefix="sgflow-adv-api-", suffix=".log")  # noqa: SIM115 (closed in close())
        self.api = subprocess.Popen(
            [sys.executable, "-m", "sgflow.cli", "serve", "--port", str(port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "sgflow.cli", "worker", "--concurrency", "1"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        keys = KeyStore(self.redis, prefix=self.prefix)
        self.acme_key = keys.create_key("acme")[1]
        self.globex_key = keys.create_key("globex")[1]
        self.acme = self.client(self.acme_key)
        self.globex = self.client(self.globex_key)
        self.anon = self.client(None)
        self._wait_ready()

    def client(self, key: str | None, timeout: float = CASE_TIMEOUT_S) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"sgflow serve exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the service did not become ready in 60 s")

    def log_tail(self, n: int = 4000) -> str:
        """The end of the API's log."""
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()[-n:]

    def send(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One attack, answered within the bound (one retry after a timeout; see above)."""
        try:
            return client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            return client.request(method, path, **kwargs)

    def assert_well(self) -> None:
        """Still ready, still answering an ordinary authenticated request, still one process."""
        assert self.api.poll() is None, f"sgflow serve died: {self.log_tail()}"
        assert self.worker.poll() is None, "the worker died"
        ready = self.send(self.anon, "GET", "/readyz")
        assert ready.status_code == 200, ready.text
        assert self.send(self.acme, "GET", "/v1/programs").status_code == 200

    def close(self) -> None:
        for client in (self.acme, self.globex, self.anon):
            client.close()
        for proc in (self.api, self.worker):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.engine.__exit__()
        self.log.close()
        for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            self.redis.delete(key)
        self.redis.close()
