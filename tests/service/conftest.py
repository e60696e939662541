"""Fixtures for the service: a real Redis (``redis://127.0.0.1:6379/0``, or ``$REDIS_URL``)
under a key prefix unique to the session (removed at the end; never FLUSHDB: other suites
share that Redis), a fake engine and the API, each served by uvicorn on a real socket.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from fastapi import FastAPI

from sgflow.service import KeyStore, Settings, create_app

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1 and a free port, in a daemon thread."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"the service tests need Redis at {REDIS_URL}: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    value = f"sgflow-test-{uuid.uuid4().hex[:12]}:"
    yield value
    for key in redis_client.scan_iter(match=f"{value}*", count=1000):
        redis_client.delete(key)


@pytest.fixture(scope="session")
def engine_url() -> Iterator[str]:
    """A stand-in for an SGLang engine: only ``GET /health``."""
    fake = FastAPI()

    @fake.get("/health")
    def health() -> dict[str, str]:
        return {}

    with ServerThread(fake) as url:
        yield url


@pytest.fixture(scope="session")
def settings(prefix: str, engine_url: str) -> Settings:
    return Settings(redis_url=REDIS_URL, redis_prefix=prefix, engine_urls=[engine_url])


@pytest.fixture(scope="session")
def api_url(settings: Settings) -> Iterator[str]:
    with ServerThread(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="session")
def keys(redis_client: redis.Redis, prefix: str) -> KeyStore:
    return KeyStore(redis_client, prefix=prefix)


def _client(url: str, secret: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.Client(base_url=url, headers=headers, timeout=10)


@pytest.fixture(scope="session")
def anon(api_url: str) -> Iterator[httpx.Client]:
    """A client without an API key."""
    with _client(api_url, None) as client:
        yield client


@pytest.fixture(scope="session")
def acme(api_url: str, keys: KeyStore) -> Iterator[httpx.Client]:
    """A client of tenant ``acme``."""
    with _client(api_url, keys.create_key("acme", name="tests")[1]) as client:
        yield client


@pytest.fixture(scope="session")
def globex(api_url: str, keys: KeyStore) -> Iterator[httpx.Client]:
    """A client of tenant ``globex``."""
    with _client(api_url, keys.create_key("globex")[1]) as client:
        yield client


def error_of(response: Any) -> dict[str, Any]:
    """The ``error`` object of an error response (httpx's or the TestClient's), checking
    the body's shape."""
    body = response.json()
    assert set(body) >= {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "field", "limit", "hint"} <= set(error), error
    return error
