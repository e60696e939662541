"""Batches at scale and their life cycle through the real API, worker, Redis and engine:
10,000 lines accepted in seconds, counts that add up, statuses and timestamps, the TTL, the
body limits, and the shared prefix warmed once before the lines fan out."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from sgflow.service import KeyStore, Settings, create_app
from tests.service.conftest import REDIS_URL, error_of
from tests.service.stack import Stack
from tests.service.test_batches_e2e import TABLE, counts_add_up, lines, results, wait_batch
from tests.service.test_runs_e2e import program

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module", autouse=True)
def programs(stack: Stack) -> None:
    r = stack.acme.post("/v1/programs", json=program("sql-generate"))
    assert r.status_code in (200, 201), r.text


def test_ten_thousand_lines_are_accepted_in_seconds_and_add_up(stack: Stack) -> None:
    pad = "x" * 60
    body = "\n".join(
        json.dumps({"custom_id": f"s-{i}", "inputs": {"table": TABLE, "question": f"{pad} {i}"}})
        for i in range(10_000)
    )
    assert len(body) > 1 << 20  # past max_request_bytes: batches have their own limit
    started = time.perf_counter()
    r = stack.acme.post(
        "/v1/batches",
        params={"program": "sql-generate@1"},
        content=body,
        headers={"Content-Type": "application/x-ndjson"},
    )
    took = time.perf_counter() - started
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["status"] == "in_progress" and batch["in_progress_at"] is not None
    assert batch["request_counts"]["total"] == 10_000
    assert took < 30, f"creating 10,000 lines took {took:.1f} s"
    cancel = stack.acme.post(f"/v1/batches/{batch['id']}/cancel")
    assert cancel.status_code == 202, cancel.text
    assert cancel.json()["cancelling_at"] is not None
    final = wait_batch(stack.acme, batch["id"], timeout=120)[-1]
    assert final["status"] == "cancelled" and final["cancelled_at"] is not None
    counts = counts_add_up(final)
    assert counts["total"] == 10_000
    rows = results(stack.acme, batch["id"])
    assert [row["custom_id"] for row in rows[:3]] == ["s-0", "s-1", "s-2"]
    assert len(rows) == 10_000
    assert sum(row["status"] == "succeeded" for row in rows) == counts["completed"]
    ttl = stack.redis.ttl(f"{stack.prefix}batch:{batch['id']}")
    assert 0 < ttl <= 7 * 24 * 3600


def test_completed_batch_has_its_timestamps_and_a_ttl(stack: Stack) -> None:
    r = stack.acme.post(
        "/v1/batches", json={"program": "sql-generate@1", "inputs": lines(2, tag="t")}
    )
    assert r.status_code == 202, r.text
    polls = wait_batch(stack.acme, r.json()["id"])
    order = ["validating", "in_progress", "finalizing", "completed"]
    seen = [order.index(p["status"]) for p in polls]
    assert seen == sorted(seen), [p["status"] for p in polls]
    final = polls[-1]
    assert final["status"] == "completed"
    assert final["created_at"] <= final["in_progress_at"] <= final["completed_at"]
    assert final["failed_at"] is None and final["cancelled_at"] is None
    for suffix in ("", ":runs", ":lines", ":counts"):
        assert stack.redis.ttl(f"{stack.prefix}batch:{final['id']}{suffix}") > 0, suffix


def test_batch_bodies_have_their_own_size_limit() -> None:
    prefix = f"sgflow-test-{uuid.uuid4().hex[:10]}:"
    settings = Settings(redis_url=REDIS_URL, redis_prefix=prefix, max_batch_bytes=4096)
    app = create_app(settings)
    sync = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    secret = KeyStore(sync, prefix=prefix).create_key("acme")[1]
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as client:
            body = "\n".join(json.dumps(line) for line in lines(100))
            r = client.post(
                "/v1/batches",
                params={"program": "sql-generate@1"},
                content=body,
                headers={"Content-Type": "application/x-ndjson"},
            )
    finally:
        for key in sync.scan_iter(match=f"{prefix}*"):
            sync.delete(key)
        sync.close()
    assert r.status_code == 413, r.text
    error = error_of(r)
    assert error["code"] == "limit.request_size" and error["limit"] == 4096
    assert "4096" in error["message"]


def warm_program(tag: str) -> dict[str, Any]:
    """A one-step program whose system prompt no earlier test sent to the engine."""
    return {
        "program": f"warm-{tag}",
        "version": 1,
        "inputs": {
            "type": "object",
            "properties": {"word": {"type": "string", "minLength": 1}},
            "required": ["word"],
        },
        "system": f"You answer with one word. Session {tag}: keep every answer short, "
        "lower-case and without punctuation, whatever the question is about.",
        "steps": [{"id": "answer", "user": "Say {{ inputs.word }}.", "gen": {"max_tokens": 3}}],
        "output": {"value": {"answer": "{{ steps.answer }}"}},
    }


def test_the_shared_prefix_is_warmed_before_the_lines_run(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:12]
    r = stack.acme.post("/v1/programs", json=warm_program(tag))
    assert r.status_code in (200, 201), r.text
    inputs = [{"custom_id": f"w-{i}", "inputs": {"word": w}} for i, w in enumerate(["yes", "no"])]
    r = stack.acme.post("/v1/batches", json={"program": f"warm-{tag}@1", "inputs": inputs})
    assert r.status_code == 202, r.text
    assert wait_batch(stack.acme, r.json()["id"])[-1]["status"] == "completed"
    for row in results(stack.acme, r.json()["id"]):
        run = stack.acme.get(f"/v1/runs/{row['run_id']}").json()
        first = run["trace"][0]
        # even the lines that started first found the system prompt cached
        assert first["cached_tokens"] > 20, first
