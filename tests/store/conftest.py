"""Fixtures for the run store: a real Redis (``REDIS_URL``, default the local one), a key
prefix of its own per test (deleted afterwards, so tests can share a Redis with anything),
and a fake clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from sgflow.store import RunStore

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1_700_000_000.0


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def connect(*, decode_responses: bool = False) -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=10, decode_responses=decode_responses)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return client


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    c = connect()
    yield c
    c.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    p = f"sgflow-test-{uuid.uuid4().hex}:"
    yield p
    keys = list(client.scan_iter(match=p + "*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(client: redis.Redis, prefix: str, clock: FakeClock) -> RunStore:
    return RunStore(
        client, prefix=prefix, lease_s=30, max_attempts=3, result_ttl_s=3600, clock=clock
    )
