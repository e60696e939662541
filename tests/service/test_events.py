"""Waiting never holds a thread: event streams and ``/v1/extract`` through the real API on a
socket and real Redis. No engine: runs are ended through the store, as a worker would."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI

from sgflow.service import KeyStore, Settings, create_app
from sgflow.store import RunStore
from tests.service.conftest import REDIS_URL, ServerThread

STREAMS = 200
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


class Api:
    def __init__(self, app: FastAPI, url: str, prefix: str, secret: str, store: RunStore) -> None:
        self.app = app
        self.url = url
        self.prefix = prefix
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.store = store

    @property
    def subscribers(self) -> int:
        return int(self.app.state.hub.subscriber_count)


@pytest.fixture
def api(redis_client: redis.Redis) -> Iterator[Api]:
    prefix = f"sgflow-test-ev-{uuid.uuid4().hex[:10]}:"
    settings = Settings(redis_url=REDIS_URL, redis_prefix=prefix)
    secret = KeyStore(redis_client, prefix=prefix).create_key("acme")[1]
    app = create_app(settings)
    try:
        with ServerThread(app) as url:
            yield Api(app, url, prefix, secret, RunStore(redis_client, prefix=prefix))
    finally:
        for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
            redis_client.delete(key)


def new_run(api: Api) -> str:
    run_id = uuid.uuid4().hex
    api.store.create(run_id=run_id, tenant="acme", program="p@1", program_hash="h", inputs={})
    return run_id


def poll(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


async def follow(client: httpx.AsyncClient, run_id: str) -> list[str]:
    """The event kinds of one stream, until the server ends it."""
    kinds = []
    async with client.stream("GET", f"/v1/runs/{run_id}/events") as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                kinds.append(line[7:])
    return kinds


def in_background(coro: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``coro`` in an event loop of its own thread; its result lands in ``out``."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = asyncio.run(coro)
        except BaseException as exc:  # reported by the test that joins the thread
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_open_event_streams_do_not_starve_other_requests(api: Api) -> None:
    runs = [new_run(api) for _ in range(STREAMS)]
    threads_before = threading.active_count()

    async def open_all() -> list[list[str]]:
        limits = httpx.Limits(max_connections=STREAMS + 10)
        async with httpx.AsyncClient(
            base_url=api.url, headers=api.headers, timeout=120, limits=limits
        ) as client:
            return await asyncio.gather(*(follow(client, r) for r in runs))

    streams, out = in_background(open_all())
    poll(lambda: api.subscribers == STREAMS, f"{STREAMS} streams are subscribed")
    hub = api.app.state.hub
    assert hub.run_count == STREAMS  # all in one blocking read of the hub
    # no thread per stream: the server thread, the client's and a few pools at most
    assert threading.active_count() - threads_before < 20
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=5) as client:
        for run_id in runs[:: STREAMS // 10]:
            r = client.get(f"/v1/runs/{run_id}")
            assert r.status_code == 200 and r.json()["status"] == "queued"
            assert client.get("/v1/programs").status_code == 200
        metrics = client.get("/metrics").text
    assert f"sgflow_event_subscribers {float(STREAMS)}" in metrics
    for run_id in runs:
        api.store.request_cancel(run_id)  # each stream gets run.finished and ends
    streams.join(timeout=120)
    assert "error" not in out, out.get("error")
    assert out["result"] == [["run.queued", "run.finished"]] * STREAMS
    poll(lambda: api.subscribers == 0 and hub.run_count == 0, "every subscription is gone")


def test_a_client_that_disconnects_frees_its_subscription(api: Api) -> None:
    run_id = new_run(api)
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=10) as client:
        with client.stream("GET", f"/v1/runs/{run_id}/events") as r:
            lines = r.iter_lines()
            assert next(lines).startswith("id: ")
            poll(lambda: api.subscribers == 1, "the stream is subscribed")
        # leaving the block closed the connection; the server notices and unsubscribes
        poll(lambda: api.subscribers == 0, "the subscription is freed")
        assert api.app.state.hub.run_count == 0


def test_a_stream_resumes_after_last_event_id_and_ends_after_run_finished(api: Api) -> None:
    run_id = new_run(api)
    ids = [api.store.append_event(run_id, "note", {"n": n}) for n in range(3)]

    async def resume() -> list[str]:
        async with httpx.AsyncClient(base_url=api.url, headers=api.headers, timeout=30) as c:
            out = []
            headers = {"Last-Event-ID": ids[0]}
            async with c.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as r:
                async for line in r.aiter_lines():
                    if line.startswith("id: "):
                        out.append(line[4:])
            return out

    reader, out = in_background(resume())
    poll(lambda: api.subscribers == 1, "the stream is subscribed")
    late = api.store.append_event(run_id, "note", {"n": 3})
    api.store.request_cancel(run_id)
    reader.join(timeout=30)
    assert "error" not in out, out.get("error")
    finished = api.store.read_events(run_id)[-1][0]
    assert out["result"] == [ids[1], ids[2], late, finished]
    # a finished run's stream is its history, without the hub
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=10) as client:
        r = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": ids[2]})
        assert [x[4:] for x in r.text.splitlines() if x.startswith("id: ")] == [late, finished]
        r = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "1-0; DROP"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "header:Last-Event-ID"


# -- /v1/extract ---------------------------------------------------------------------------------


def test_extract_takes_a_json_body_without_a_content_type(api: Api) -> None:
    body = '{"schema": {"type": "object"}, "text": "hello", "timeout_s": 0}'
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=30) as client:
        r = client.post("/v1/extract", content=body)  # no Content-Type header at all
        assert r.status_code == 202, r.text
        r = client.post("/v1/extract", content=body, headers={"Content-Type": "text/plain"})
        assert r.status_code == 202, r.text
        r = client.post("/v1/extract", content='{"schema": 5, "text": ""}')
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "request.invalid"
    assert {e["field"] for e in error["errors"]} == {"/schema", "/text"}


def fake_worker(store: RunStore, stop: threading.Event) -> None:
    """Ends every queued run succeeded with ``{"n": 7}``, as a worker would."""
    while not stop.wait(0.05):
        for run_id in store.stale_queued(0):
            claim = store.claim(run_id, "fake-worker")
            if claim is not None:
                store.append_event(claim, "step.started", {"step": "extract"})
                store.finish(claim, status="succeeded", output={"output": {"n": 7}})


def test_extract_answers_when_the_run_finishes(api: Api) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=fake_worker, args=(api.store, stop), daemon=True)
    body = {"schema": SCHEMA, "text": "seven", "timeout_s": 60}
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=90) as client:
        waiting, out = in_background(_post(api, "/v1/extract", body))
        poll(lambda: api.subscribers == 1, "the extraction waits on the hub")
        worker.start()
        waiting.join(timeout=90)
        stop.set()
        assert "error" not in out, out.get("error")
        r = out["result"]
        assert r.status_code == 200, r.text
        assert r.json()["object"] == {"n": 7} and r.json()["run"]["status"] == "succeeded"
        assert api.subscribers == 0
        # not finished in time: 202 with the run, the subscription freed all the same
        r = client.post("/v1/extract", json={**body, "timeout_s": 0.5})
    worker.join()
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert api.subscribers == 0


async def _post(api: Api, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url, headers=api.headers, timeout=90) as client:
        return await client.post(path, json=body)
