"""``/metrics`` and the ``workers`` ready check, on a real Redis under a prefix of their own
and a fake engine that answers ``/health`` and ``/server_info``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from sgflow.service import Settings, create_app
from sgflow.store import RunStore
from tests.service.conftest import REDIS_URL, ServerThread


@pytest.fixture(scope="module")
def fake_engine() -> Iterator[str]:
    fake = FastAPI()

    @fake.get("/health")
    def health() -> dict[str, str]:
        return {}

    @fake.get("/server_info")
    def server_info() -> dict[str, object]:
        return {
            "internal_states": [
                {"cache_hit_tokens": 30, "prompt_tokens": 120, "generated_tokens": 7}
            ]
        }

    with ServerThread(fake) as url:
        yield url


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    value = f"sgflow-test-{uuid.uuid4().hex[:12]}:"
    yield value
    for key in redis_client.scan_iter(match=f"{value}*", count=1000):
        redis_client.delete(key)


@pytest.fixture
def api(prefix: str, fake_engine: str) -> Iterator[httpx.Client]:
    settings = Settings(
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        engine_urls=[fake_engine, "http://127.0.0.1:9"],  # the second never answers
    )
    with ServerThread(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        yield client


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_read_the_store_and_the_engines(
    api: httpx.Client, redis_client: redis.Redis, prefix: str, fake_engine: str
) -> None:
    store = RunStore(redis_client, prefix=prefix)
    for i in range(3):
        store.create(run_id=f"r{i}", tenant="acme", program="p@1", program_hash="h", inputs={})
        store.stats.run_submitted()
    claim = store.claim("r0", "w1")
    assert claim is not None
    store.stats.step_finished(
        0.5, {"prompt_tokens": 100, "cached_tokens": 40, "completion_tokens": 9}
    )
    store.stats.step_finished(1.5, {"prompt_tokens": 20, "completion_tokens": 1})
    assert store.finish(claim, status="succeeded", output={})
    assert store.request_cancel("r1") == "cancelled"

    m = scrape(api)
    assert m[("sgflow_runs_queued", ())] == 1
    assert m[("sgflow_runs_running", ())] == 0
    assert m[("sgflow_runs_submitted_total", ())] == 3
    assert m[("sgflow_runs_finished_total", (("status", "succeeded"),))] == 1
    assert m[("sgflow_runs_finished_total", (("status", "cancelled"),))] == 1
    assert m[("sgflow_runs_finished_total", (("status", "failed"),))] == 0
    assert m[("sgflow_steps_finished_total", ())] == 2
    assert m[("sgflow_step_latency_seconds_total", ())] == 2.0
    bucket = "sgflow_step_latency_seconds_bucket"
    assert m[(bucket, (("le", "0.25"),))] == 0
    assert m[(bucket, (("le", "0.5"),))] == 1
    assert m[(bucket, (("le", "1.0"),))] == 1
    assert m[(bucket, (("le", "2.5"),))] == 2
    assert m[(bucket, (("le", "+Inf"),))] == 2
    assert m[("sgflow_step_latency_seconds_count", ())] == 2
    assert m[("sgflow_step_latency_seconds_sum", ())] == 2.0
    assert m[("sgflow_step_tokens_total", (("kind", "prompt"),))] == 120
    assert m[("sgflow_step_tokens_total", (("kind", "cached"),))] == 40
    assert m[("sgflow_step_tokens_total", (("kind", "completion"),))] == 10
    assert m[("sgflow_engine_up", (("engine", fake_engine),))] == 1
    assert m[("sgflow_engine_up", (("engine", "http://127.0.0.1:9"),))] == 0
    hit = (("engine", fake_engine), ("kind", "cache_hit"))
    assert m[("sgflow_engine_tokens_total", hit)] == 30
    assert m[("sgflow_engine_cached_token_ratio", (("engine", fake_engine),))] == 0.25
    assert ("sgflow_engine_cached_token_ratio", (("engine", "http://127.0.0.1:9"),)) not in m


def test_running_gauge_counts_claimed_runs(
    api: httpx.Client, redis_client: redis.Redis, prefix: str
) -> None:
    store = RunStore(redis_client, prefix=prefix)
    store.create(run_id="a", tenant="acme", program="p@1", program_hash="h", inputs={})
    assert store.claim("a", "w1") is not None
    m = scrape(api)
    assert (m[("sgflow_runs_queued", ())], m[("sgflow_runs_running", ())]) == (0, 1)
    assert m[("sgflow_runs_submitted_total", ())] == 0  # the API did not create it


def test_metrics_need_no_key(api: httpx.Client) -> None:
    assert "Authorization" not in api.headers
    assert api.get("/metrics").status_code == 200


def test_readyz_names_workers_until_one_announces_itself(
    api: httpx.Client, redis_client: redis.Redis, prefix: str
) -> None:
    r = api.get("/readyz")
    assert r.status_code == 503
    assert r.json()["failing"] == ["workers"]
    assert "workers" in r.json()["error"]["message"]

    redis_client.set(f"{prefix}workers:host:1234", "1", ex=30)
    r = api.get("/readyz")
    assert r.status_code == 200, r.text
    check = next(c for c in r.json()["checks"] if c["name"] == "workers")
    assert check == {"name": "workers", "ok": True, "detail": "1 alive", "required": True}
