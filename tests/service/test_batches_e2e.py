"""Batches through the real HTTP API, a real Celery worker, real Redis and the real engine."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from sgflow.engine.launcher import EngineProcess
from sgflow.service import KeyStore, Settings, create_app
from tests.service.conftest import REDIS_URL, error_of
from tests.service.test_runs_e2e import Stack, program

pytestmark = pytest.mark.engine

TABLE = "orders(id int, customer text, total numeric, created date)"
FINAL = ("completed", "failed", "expired", "cancelled")


@pytest.fixture(scope="module")
def stack(engine: EngineProcess) -> Iterator[Stack]:
    s = Stack(engine.url)
    try:
        r = s.acme.post("/v1/programs", json=program("sql-generate"))
        assert r.status_code in (200, 201), r.text
        yield s
    finally:
        s.close()


def lines(n: int, tag: str = "q") -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{tag}-{i}",
            "inputs": {"table": TABLE, "question": f"orders with a total above {i * 10}"},
        }
        for i in range(n)
    ]


def counts_add_up(batch: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = batch["request_counts"]
    assert set(counts) == {"total", "completed", "failed"}, counts
    assert 0 <= counts["completed"] + counts["failed"] <= counts["total"], counts
    if batch["status"] in FINAL:
        assert counts["completed"] + counts["failed"] == counts["total"], batch
    return counts


def wait_batch(
    client: httpx.Client, batch_id: str, until: tuple[str, ...] = FINAL, timeout: float = 120
) -> list[dict[str, Any]]:
    """Poll until the status is in ``until``; every poll's body, checked to add up."""
    polls: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/batches/{batch_id}")
        assert r.status_code == 200, r.text
        polls.append(r.json())
        counts_add_up(polls[-1])
        if polls[-1]["status"] in until:
            return polls
        time.sleep(0.25)
    raise AssertionError(f"batch {batch_id} did not finish in {timeout} s: {polls[-1]}")


def results(client: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/batches/{batch_id}/results")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in r.text.splitlines()]


def test_a_batch_of_50_reports_progress_and_returns_results_in_input_order(stack: Stack) -> None:
    r = stack.acme.post("/v1/batches", json={"program": "sql-generate@1", "inputs": lines(50)})
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["object"] == "batch" and batch["program"] == "sql-generate@1"
    assert batch["status"] == "in_progress"
    assert batch["results_url"] == f"/v1/batches/{batch['id']}/results"
    assert stack.worker.poll() is None, "the worker process exited"
    polls = wait_batch(stack.acme, batch["id"])
    done = [p["request_counts"]["completed"] + p["request_counts"]["failed"] for p in polls]
    assert done == sorted(done), "progress never goes back"
    assert any(0 < d < 50 for d in done) or len(polls) == 1, done
    assert polls[-1]["status"] == "completed"
    assert polls[-1]["request_counts"] == {"total": 50, "completed": 50, "failed": 0}
    rows = results(stack.acme, batch["id"])
    assert [row["custom_id"] for row in rows] == [f"q-{i}" for i in range(50)]
    assert all(row["status"] == "succeeded" for row in rows), rows
    assert all(row["output"]["sql"].startswith("SELECT ") for row in rows)
    assert len({row["run_id"] for row in rows}) == 50
    run = stack.acme.get(f"/v1/runs/{rows[7]['run_id']}").json()
    assert run["batch"] == batch["id"]
    assert run["output"] == rows[7]["output"]
    listed = stack.acme.get("/v1/batches").json()["data"]
    assert listed[0]["id"] == batch["id"]


def test_jsonl_upload(stack: Stack) -> None:
    body = "\n".join(json.dumps(line) for line in lines(3, tag="jl")) + "\n"
    r = stack.acme.post(
        "/v1/batches",
        params={"program": "sql-generate@1"},
        content=body,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["request_counts"]["total"] == 3
    assert wait_batch(stack.acme, r.json()["id"])[-1]["status"] == "completed"
    rows = results(stack.acme, r.json()["id"])
    assert [row["custom_id"] for row in rows] == ["jl-0", "jl-1", "jl-2"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"program": "sql-generate@1", "inputs": [*lines(3), lines(1)[0]]}, 422,
         "batch.duplicate_custom_id", "/inputs/3/custom_id"),
        ({"program": "sql-generate@1", "inputs": [*lines(2), {"custom_id": "", "inputs": {}}]},
         422, "request.invalid", "/inputs/2/custom_id"),
        ({"program": "sql-generate@1",
          "inputs": [*lines(1), {"custom_id": "x", "inputs": {"table": TABLE, "question": 5}}]},
         422, "input.invalid", "/inputs/1/inputs/question"),
        ({"program": "sql-generate@1", "inputs": []}, 422, "request.invalid", "/inputs"),
        ({"program": "sql-generate@1", "inputs": lines(1), "deadline_s": -1}, 422,
         "request.invalid", "/deadline_s"),
        ({"program": "sql-generate@1", "inputs": lines(1), "extra": 1}, 422,
         "request.invalid", "/extra"),
        ({"program": "nope@1", "inputs": lines(1)}, 404, "program.not_found", None),
        ({"inputs": lines(1)}, 422, "request.invalid", "/program"),
    ],
)  # fmt: skip
def test_bad_batches_are_refused_whole(
    stack: Stack, body: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    before = stack.acme.get("/v1/batches").json()["data"]
    r = stack.acme.post("/v1/batches", json=body)
    assert r.status_code == status, r.text
    error = error_of(r)
    assert error["code"] == code
    if field is not None:
        assert error["field"] == field
    assert stack.acme.get("/v1/batches").json()["data"] == before, "nothing was stored"


def test_jsonl_upload_needs_its_program_and_valid_lines(stack: Stack) -> None:
    ndjson = {"Content-Type": "application/x-ndjson"}
    r = stack.acme.post("/v1/batches", content=json.dumps(lines(1)[0]), headers=ndjson)
    assert r.status_code == 422 and error_of(r)["field"] == "query:program"
    r = stack.acme.post(
        "/v1/batches", params={"program": "sql-generate@1"}, content="{}\n{oops", headers=ndjson
    )
    assert r.status_code == 400 and "line 2" in error_of(r)["message"]


def test_the_batch_size_limit() -> None:
    settings = Settings(redis_url=REDIS_URL, redis_prefix="sgflow-test-limit:", max_batch_size=3)
    app = create_app(settings)
    sync = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    secret = KeyStore(sync, prefix=settings.redis_prefix).create_key("acme")[1]
    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as client:
        r = client.post("/v1/batches", json={"program": "sql-generate@1", "inputs": lines(4)})
        for key in sync.scan_iter(match="sgflow-test-limit:*"):
            sync.delete(key)
    sync.close()
    assert r.status_code == 413, r.text
    assert error_of(r)["code"] == "limit.batch_size" and error_of(r)["limit"] == 3


def test_another_tenant_gets_404(stack: Stack) -> None:
    r = stack.acme.post("/v1/batches", json={"program": "sql-generate@1", "inputs": lines(2)})
    batch_id = r.json()["id"]
    for method, path in [
        ("GET", f"/v1/batches/{batch_id}"),
        ("GET", f"/v1/batches/{batch_id}/results"),
        ("POST", f"/v1/batches/{batch_id}/cancel"),
    ]:
        resp = stack.globex.request(method, path)
        assert resp.status_code == 404, (path, resp.text)
        assert error_of(resp)["code"] == "batch.not_found"
    assert batch_id not in [b["id"] for b in stack.globex.get("/v1/batches").json()["data"]]
    assert wait_batch(stack.acme, batch_id)[-1]["status"] == "completed"


def test_cancel_keeps_finished_results(stack: Stack) -> None:
    r = stack.acme.post(
        "/v1/batches", json={"program": "sql-generate@1", "inputs": lines(20, tag="c")}
    )
    batch_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while stack.acme.get(f"/v1/batches/{batch_id}").json()["request_counts"]["completed"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancel = stack.acme.post(f"/v1/batches/{batch_id}/cancel")
    assert cancel.status_code == 202, cancel.text
    assert cancel.json()["status"] in ("cancelling", "cancelled")
    final = wait_batch(stack.acme, batch_id)[-1]
    assert final["status"] == "cancelled"
    counts = counts_add_up(final)
    assert counts["completed"] >= 2 and counts["failed"] >= 1, counts
    rows = results(stack.acme, batch_id)
    assert [row["custom_id"] for row in rows] == [f"c-{i}" for i in range(20)]
    succeeded = [row for row in rows if row["status"] == "succeeded"]
    assert len(succeeded) == counts["completed"]
    assert all(row["output"]["sql"].startswith("SELECT ") for row in succeeded)
    cancelled = [row for row in rows if row["status"] == "cancelled"]
    assert cancelled and all(row["error"]["code"] == "run.cancelled" for row in cancelled)
    again = stack.acme.post(f"/v1/batches/{batch_id}/cancel").json()
    assert again["status"] == "cancelled" and again["request_counts"] == final["request_counts"]


def test_a_deadline_expires_unfinished_lines(stack: Stack) -> None:
    r = stack.acme.post(
        "/v1/batches",
        json={"program": "sql-generate@1", "inputs": lines(20, tag="d"), "deadline_s": 1},
    )
    assert r.status_code == 202, r.text
    batch_id = r.json()["id"]
    assert r.json()["deadline_at"] is not None
    time.sleep(1.2)
    final = wait_batch(stack.acme, batch_id)[-1]
    assert final["status"] == "expired"
    counts = counts_add_up(final)
    assert counts["failed"] >= 1, counts
    rows = results(stack.acme, batch_id)
    assert [row["custom_id"] for row in rows] == [f"d-{i}" for i in range(20)]
    expired = [row for row in rows if row["status"] == "expired"]
    assert expired and all(row["error"]["code"] == "batch.expired" for row in expired)
    assert len(expired) + sum(row["status"] == "succeeded" for row in rows) == 20
    time.sleep(1)  # lines cut off stay expired, whatever their runs did since
    assert results(stack.acme, batch_id) == rows
    assert stack.acme.get(f"/v1/batches/{batch_id}").json()["request_counts"] == counts
