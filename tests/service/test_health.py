"""``/healthz``, ``/readyz`` and the OpenAPI document."""

from __future__ import annotations

from typing import Any

import httpx
import redis
from fastapi.testclient import TestClient

from sgflow.service import Settings, create_app
from sgflow.service.health import ReadyCheck
from tests.service.conftest import error_of


def test_healthz(anon: httpx.Client) -> None:
    r = anon.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_readyz_ready(anon: httpx.Client, engine_url: str) -> None:
    r = anon.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert [c["name"] for c in body["checks"]] == ["redis", "engines"]
    assert f"{engine_url}: ok" in body["checks"][1]["detail"]


def _readyz(app_settings: Settings, client: redis.Redis, *extra: ReadyCheck) -> Any:
    app = create_app(app_settings, client)
    app.state.ready_checks.extend(extra)
    return TestClient(app).get("/readyz")


def test_readyz_names_an_unreachable_engine(settings: Settings, redis_client: redis.Redis) -> None:
    dead = "http://127.0.0.1:9"
    r = _readyz(settings.model_copy(update={"engine_urls": [dead]}), redis_client)
    assert r.status_code == 503
    body = r.json()
    assert body["failing"] == ["engines"]
    assert error_of(r)["code"] == "service.not_ready"
    engines = body["checks"][1]
    assert engines["ok"] is False
    assert dead in engines["detail"] and "ConnectError" in engines["detail"]


def test_readyz_one_engine_of_two_is_enough(
    settings: Settings, redis_client: redis.Redis, engine_url: str
) -> None:
    update = {"engine_urls": ["http://127.0.0.1:9", engine_url]}
    r = _readyz(settings.model_copy(update=update), redis_client)
    assert r.status_code == 200
    assert "1 of 2 healthy" in r.json()["checks"][1]["detail"]


def test_readyz_names_unreachable_redis(settings: Settings) -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    r = _readyz(settings, dead)
    assert r.status_code == 503
    assert r.json()["failing"] == ["redis"]


def test_readyz_runs_added_checks(settings: Settings, redis_client: redis.Redis) -> None:
    async def no_workers() -> tuple[bool, str]:
        return False, "0 workers consuming"

    async def broken() -> tuple[bool, str]:
        raise RuntimeError("cannot ask")

    r = _readyz(
        settings, redis_client, ReadyCheck("workers", no_workers), ReadyCheck("other", broken)
    )
    assert r.status_code == 503
    body = r.json()
    assert body["failing"] == ["workers", "other"]
    assert body["checks"][3]["detail"] == "RuntimeError: cannot ask"


def test_openapi_documents_the_api(anon: httpx.Client) -> None:
    assert anon.get("/docs").status_code == 200
    spec = anon.get("/openapi.json").json()
    assert {"/v1/programs", "/v1/programs/{name}", "/v1/programs/{name}/{version}"} <= set(
        spec["paths"]
    )
    assert "api_key" in spec["components"]["securitySchemes"]
    assert "oneOf" in str(spec["paths"]["/v1/programs"]["post"]["requestBody"])
