"""``/healthz``, ``/readyz`` and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient

from sgflow.service import Settings, create_app
from sgflow.service.health import ReadyCheck
from tests.service.conftest import error_of


def test_healthz(anon: httpx.Client) -> None:
    r = anon.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


@pytest.fixture
def worker_alive(redis_client: redis.Redis, prefix: str) -> Iterator[None]:
    """A worker's presence key, as its reaper loop writes it."""
    key = f"{prefix}workers:test-host:1"
    redis_client.set(key, "1", ex=60)
    yield
    redis_client.delete(key)


def test_readyz_ready(anon: httpx.Client, engine_url: str, worker_alive: None) -> None:
    r = anon.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    names = [c["name"] for c in body["checks"]]
    assert names == ["redis", "engines", "workers", "redis_durability"]
    assert f"{engine_url}: ok" in body["checks"][1]["detail"]


def _readyz(
    app_settings: Settings, client: redis.asyncio.Redis | None = None, *extra: ReadyCheck
) -> Any:
    app = create_app(app_settings, client)
    app.state.ready_checks.extend(extra)
    with TestClient(app) as test_client:
        return test_client.get("/readyz")


def test_readyz_names_an_unreachable_engine(
    settings: Settings, redis_client: redis.Redis, worker_alive: None
) -> None:
    dead = "http://127.0.0.1:9"
    r = _readyz(settings.model_copy(update={"engine_urls": [dead]}))
    assert r.status_code == 503
    body = r.json()
    assert body["failing"] == ["engines"]
    assert error_of(r)["code"] == "service.not_ready"
    engines = body["checks"][1]
    assert engines["ok"] is False
    assert dead in engines["detail"] and "ConnectError" in engines["detail"]


def test_readyz_one_engine_of_two_is_enough(
    settings: Settings, redis_client: redis.Redis, engine_url: str, worker_alive: None
) -> None:
    update = {"engine_urls": ["http://127.0.0.1:9", engine_url]}
    r = _readyz(settings.model_copy(update=update))
    assert r.status_code == 200
    assert "1 of 2 healthy" in r.json()["checks"][1]["detail"]


def test_readyz_names_unreachable_redis(settings: Settings) -> None:
    dead = redis.asyncio.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    r = _readyz(settings, dead)
    assert r.status_code == 503
    assert r.json()["failing"] == ["redis", "workers"]  # workers are found through Redis


def test_readyz_runs_added_checks(
    settings: Settings, redis_client: redis.Redis, worker_alive: None
) -> None:
    async def no_queue() -> tuple[bool, str]:
        return False, "0 queues"

    async def broken() -> tuple[bool, str]:
        raise RuntimeError("cannot ask")

    r = _readyz(settings, None, ReadyCheck("queue", no_queue), ReadyCheck("other", broken))
    assert r.status_code == 503
    body = r.json()
    assert body["failing"] == ["queue", "other"]
    assert body["checks"][5]["detail"] == "RuntimeError: cannot ask"


def test_readyz_warns_about_redis_without_aof_but_stays_ready(
    settings: Settings, redis_client: redis.Redis, worker_alive: None
) -> None:
    """The machine's Redis runs without AOF (a test cannot turn it on: it is shared): "never
    lost" does not hold there, which /readyz says as a warning, not a failure."""
    aof = redis_client.config_get("appendonly")["appendonly"]
    r = _readyz(settings)
    assert r.status_code == 200, r.text
    body = r.json()
    durability = body["checks"][3]
    assert durability["name"] == "redis_durability" and durability["required"] is False
    if aof == "yes":
        assert body["warnings"] == [] and durability["ok"] is True
    else:
        assert body["warnings"] == ["redis_durability"]
        assert "without AOF" in durability["detail"]


def test_readyz_checks_the_router_when_there_is_one(
    settings: Settings, redis_client: redis.Redis, engine_url: str, worker_alive: None
) -> None:
    dead = "http://127.0.0.1:9"
    r = _readyz(settings.model_copy(update={"router_url": dead}))
    assert r.status_code == 503
    assert r.json()["failing"] == ["router"]
    r = _readyz(settings.model_copy(update={"router_url": engine_url}))
    assert r.status_code == 200


def test_openapi_documents_the_api(anon: httpx.Client) -> None:
    assert anon.get("/docs").status_code == 200
    spec = anon.get("/openapi.json").json()
    assert {"/v1/programs", "/v1/programs/{name}", "/v1/programs/{name}/{version}"} <= set(
        spec["paths"]
    )
    assert "api_key" in spec["components"]["securitySchemes"]
    assert "oneOf" in str(spec["paths"]["/v1/programs"]["post"]["requestBody"])
