"""The per-tenant cap on queued and running runs through the real API on a socket and real
Redis, with no worker (runs stay queued): concurrent submissions never pass it, a big batch
does not hide it, and a submission costs the same few Redis commands however much the tenant
has stored (counted on the API's own Redis connections, not timed)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

from sgflow.service import KeyStore, Settings, create_app
from tests.service.conftest import REDIS_URL, ServerThread, error_of

CAP = 3
PROGRAM = {"program": "cap", "steps": [{"id": "a", "user": "Say hi.", "gen": {"max_tokens": 4}}]}


class CommandLog:
    """Every command sent on the connections of one client (pipelines included)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.lock = threading.Lock()

    def add(self, commands: list[Any]) -> None:
        with self.lock:
            self.names += [str(c[0]).upper() for c in commands]


def counting_client(log: CommandLog) -> redis.asyncio.Redis:
    """An async client (the API's kind) whose connections log every command they send."""

    class Counting(redis.asyncio.Connection):
        async def send_command(self, *args: Any, **kwargs: Any) -> None:
            log.add([args])
            await super().send_command(*args, **kwargs)

        def pack_commands(self, commands: Any) -> Any:
            commands = list(commands)
            log.add(commands)
            return super().pack_commands(commands)

    pool = redis.asyncio.ConnectionPool.from_url(
        REDIS_URL, connection_class=Counting, decode_responses=True
    )
    return redis.asyncio.Redis(connection_pool=pool)


class Api:
    def __init__(self, prefix: str, url: str, log: CommandLog, secret: str) -> None:
        self.prefix = prefix
        self.url = url
        self.log = log
        self.http = httpx.Client(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {secret}"}
        )


@pytest.fixture
def api(redis_client: redis.Redis) -> Iterator[Api]:
    prefix = f"sgflow-test-cap-{uuid.uuid4().hex[:10]}:"
    settings = Settings(
        redis_url=REDIS_URL, redis_prefix=prefix, max_concurrent_runs_per_tenant=CAP
    )
    log = CommandLog()
    secret = KeyStore(redis_client, prefix=prefix).create_key("acme")[1]
    try:
        with ServerThread(create_app(settings, counting_client(log))) as url:
            a = Api(prefix, url, log, secret)
            yield a
            a.http.close()
    finally:
        for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
            redis_client.delete(key)


def submit(api: Api, **extra: Any) -> httpx.Response:
    return api.http.post("/v1/runs", json={"program": PROGRAM, "inputs": {}, **extra})


def test_concurrent_submissions_never_pass_the_cap(api: Api) -> None:
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda _: submit(api), range(12)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [202] * CAP + [429] * (12 - CAP), [r.text for r in answers]
    refused = next(r for r in answers if r.status_code == 429)
    error = error_of(refused)
    assert error["code"] == "limit.concurrent_runs" and error["limit"] == CAP
    assert refused.headers["Retry-After"] == "5"
    listed = api.http.get("/v1/runs", params={"status": "queued"}).json()["data"]
    assert len(listed) == CAP
    # cancelling one frees exactly one place
    assert api.http.post(f"/v1/runs/{listed[0]['id']}/cancel").json()["cancel"] == "cancelled"
    assert submit(api).status_code == 202
    assert submit(api).status_code == 429


def test_a_tenant_with_a_big_batch_is_still_capped(api: Api) -> None:
    # runs older than the batch's 500 lines: listing the newest runs would see only lines
    assert [submit(api).status_code for _ in range(CAP - 1)] == [202] * (CAP - 1)
    lines = [{"custom_id": f"c{i}", "inputs": {}} for i in range(500)]
    r = api.http.post("/v1/batches", json={"program": PROGRAM, "inputs": lines})
    assert r.status_code == 202, r.text
    assert [submit(api).status_code for _ in range(3)] == [202, 429, 429]


def test_a_submission_costs_the_same_few_commands_however_many_runs_exist(api: Api) -> None:
    def cost() -> list[str]:
        before = len(api.log.names)
        r = submit(api)
        sent = api.log.names[before:]  # the request is over: nothing else runs meanwhile
        assert r.status_code == 202, r.text
        assert api.http.post(f"/v1/runs/{r.json()['id']}/cancel").status_code == 202
        return sent

    cost()  # the first loads the scripts into Redis
    small = cost()
    lines = [{"custom_id": f"c{i}", "inputs": {}} for i in range(600)]
    r = api.http.post("/v1/batches", json={"program": PROGRAM, "inputs": lines})
    assert r.status_code == 202, r.text
    for _ in range(CAP - 1):  # active runs besides 600 queued batch lines
        assert submit(api).status_code == 202
    big = cost()
    assert big == small, (small, big)
    assert len(small) <= 10, small
