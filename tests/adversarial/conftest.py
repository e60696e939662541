"""The adversarial suite: attacks by class, each answered within a bound, the service alive after.

``service`` is the real API as a separate ``sgflow serve`` process (a catastrophic regex in a
thread of the test process would freeze the tests themselves) on the shared Redis under a
key prefix of its own, with a stand-in engine that answers ``/health``: no attack here needs
generation. No worker runs; the tests avoid creating runs where they can (a 422 after the
part under attack was evaluated), and the prefix is removed at the end.

``BOUND_S`` is the client timeout of every request: an answer that takes longer is a failure
(``httpx.ReadTimeout``), so the bound is asserted by the client, not by measuring.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema._format
import jsonschema._keywords
import jsonschema._legacy_keywords
import jsonschema._utils
import pytest
import redis
from fastapi import FastAPI

from sgflow.service import KeyStore
from tests.service.conftest import REDIS_URL, ServerThread

BOUND_S = 1.0
"""Seconds each request may take (issue 9's bound). Measured on a loaded 2-core machine (load
average 12): median 12 ms, slowest 0.24 s; a backtracking regex on these inputs takes hours."""


@dataclass
class Service:
    url: str
    key: str
    prefix: str
    log: str

    def client(self, timeout: float = BOUND_S) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def stand_in_engine() -> Iterator[str]:
    """A stand-in for an SGLang engine: only ``GET /health`` (for ``/readyz``)."""
    fake = FastAPI()

    @fake.get("/health")
    def health() -> dict[str, str]:
        return {}

    with ServerThread(fake) as url:
        yield url


@pytest.fixture(scope="session")
def service(stand_in_engine: str) -> Iterator[Service]:
    prefix = f"sgflow-adv-{uuid.uuid4().hex[:10]}:"
    port = _free_port()
    env = {
        **os.environ,
        "SGFLOW_REDIS_URL": REDIS_URL,
        "SGFLOW_REDIS_PREFIX": prefix,
        "SGFLOW_PREFIX": prefix,  # the Celery queue's name comes from this one
        "SGFLOW_ENGINE_URLS": stand_in_engine,
    }
    log = tempfile.NamedTemporaryFile(prefix="sgflow-adv-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sgflow.cli",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        _wait_until_up(url, proc, log.name)
        secret = KeyStore(client, prefix=prefix).create_key("adversary")[1]
        yield Service(url=url, key=secret, prefix=prefix, log=log.name)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()
        log.close()
        os.unlink(log.name)


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log: str) -> None:
    deadline = time.monotonic() + 120  # imports (sglang, xgrammar) take a while on a busy box
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sgflow serve exited: {_tail(log)}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"sgflow serve did not answer /healthz: {_tail(log)}")


def _tail(log: str) -> str:
    with open(log, encoding="utf-8", errors="replace") as f:
        return f.read()[-2000:]


@pytest.fixture
def api(service: Service) -> Iterator[httpx.Client]:
    """A bounded client of tenant ``adversary``; afterwards, the service must still answer."""
    with service.client() as client:
        yield client
        assert client.get("/healthz").status_code == 200


class _NoPythonRe:
    """Stands in for the ``re`` module inside jsonschema: any use fails the test at once
    (a regression to Python's backtracking ``re`` would otherwise freeze it)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"jsonschema used Python's re.{name} on a user pattern")


@pytest.fixture
def no_python_re(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (
        jsonschema._keywords,
        jsonschema._utils,
        jsonschema._legacy_keywords,
        jsonschema._format,
    ):
        monkeypatch.setattr(module, "re", _NoPythonRe())


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an error answer, checking the shape every error has."""
    body = response.json()
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "field", "limit", "hint"} <= set(error), error
    return error
