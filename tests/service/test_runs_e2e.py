"""Runs and extraction through the real HTTP API, a real Celery worker process, real Redis and
the real engine with the real model."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.service.stack import Stack

pytestmark = pytest.mark.engine

LIBRARY = Path(__file__).parents[2] / "sgflow" / "programs" / "library"


def program(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((LIBRARY / f"{name}.yaml").read_text()))


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((LIBRARY / "samples" / f"{name}.json").read_text()))


def wait_finished(client: httpx.Client, run_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return dict(run)
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish")


def sse(client: httpx.Client, path: str, last_event_id: str | None = None) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", path, headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and current:
                events.append(current)
                current = {}
    return events


def test_submit_follow_and_reconnect(stack: Stack) -> None:
    assert stack.acme.post("/v1/programs", json=program("ticket-triage")).status_code in (200, 201)
    r = stack.acme.post(
        "/v1/runs", json={"program": "ticket-triage@1", "inputs": sample("ticket-triage")}
    )
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["status"] == "queued" and run["events_url"].endswith("/events")
    events = sse(stack.acme, run["events_url"])
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run.queued" and kinds[-1] == "run.finished"
    assert [e["data"]["step"] for e in events if e["event"] == "step.finished"] == [
        "category",
        "urgency",
        "team",
        "reply",
    ]
    # reconnecting after the third event replays exactly the rest
    rest = sse(stack.acme, run["events_url"], last_event_id=events[2]["id"])
    assert [e["id"] for e in rest] == [e["id"] for e in events[3:]]
    final = wait_finished(stack.acme, run["id"])
    assert final["status"] == "succeeded", final["error"]
    assert final["output"]["urgency"] in ("low", "medium", "high")
    assert [t["step"] for t in final["trace"]] == ["category", "urgency", "team", "reply"]
    listed = stack.acme.get("/v1/runs", params={"status": "succeeded"}).json()["data"]
    assert run["id"] in [r["id"] for r in listed]


def test_idempotency_key(stack: Stack) -> None:
    body = {"program": program("sql-generate"), "inputs": sample("sql-generate")}
    key = uuid.uuid4().hex
    first = stack.acme.post("/v1/runs", json=body, headers={"Idempotency-Key": key})
    again = stack.acme.post("/v1/runs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = dict(body, inputs={"table": "t(a int)", "question": "count rows"})
    conflict = stack.acme.post("/v1/runs", json=other, headers={"Idempotency-Key": key})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency.conflict"
    wait_finished(stack.acme, first.json()["id"])


def test_tenant_isolation_on_runs(stack: Stack) -> None:
    r = stack.acme.post(
        "/v1/runs", json={"program": program("sql-generate"), "inputs": sample("sql-generate")}
    )
    run_id = r.json()["id"]
    for method, path in [
        ("GET", f"/v1/runs/{run_id}"),
        ("GET", f"/v1/runs/{run_id}/events"),
        ("POST", f"/v1/runs/{run_id}/cancel"),
    ]:
        resp = stack.globex.request(method, path)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json()["error"]["code"] == "run.not_found"
    assert run_id not in [x["id"] for x in stack.globex.get("/v1/runs").json()["data"]]
    wait_finished(stack.acme, run_id)


def test_cancel(stack: Stack) -> None:
    r = stack.acme.post(
        "/v1/runs", json={"program": program("resume-parse"), "inputs": sample("resume-parse")}
    )
    run_id = r.json()["id"]
    cancel = stack.acme.post(f"/v1/runs/{run_id}/cancel")
    assert cancel.status_code == 202
    final = wait_finished(stack.acme, run_id)
    assert final["status"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"program": "nope@1", "inputs": {}}, 404, "program.not_found", None),
        ({"program": "bad ref!", "inputs": {}}, 422, "request.invalid", "/program"),
        ({"inputs": {}}, 422, "request.invalid", "/program"),
        (
            {"program": {"program": "x", "steps": [{"id": "a", "user": "{{ nope }}", "gen": {}}]}},
            422,
            "template.unknown_name",
            "/program/steps/0/user",
        ),
        ({"program": "sql-generate-missing", "inputs": {}}, 404, "program.not_found", None),
        (
            {
                "program": {
                    "program": "x",
                    "inputs": {
                        "type": "object",
                        "required": ["q"],
                        "properties": {"q": {"type": "string"}},
                    },
                    "steps": [{"id": "a", "user": "{{ inputs.q }}", "gen": {}}],
                },
                "inputs": {"q": 5},
            },
            422,
            "input.invalid",
            "/inputs/q",
        ),
        (
            {
                "program": {"program": "x", "steps": [{"id": "a", "user": "q", "gen": {}}]},
                "inputs": [],
            },
            422,
            "request.invalid",
            "/inputs",
        ),
        (
            {
                "program": {"program": "x", "steps": [{"id": "a", "user": "q", "gen": {}}]},
                "priority": 99,
            },
            422,
            "request.invalid",
            "/priority",
        ),
        (
            {
                "program": {"program": "x", "steps": [{"id": "a", "user": "q", "gen": {}}]},
                "extra": 1,
            },
            422,
            "request.invalid",
            "/extra",
        ),
    ],
)
def test_bad_run_requests(
    stack: Stack, body: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    r = stack.acme.post("/v1/runs", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert error["field"] == field


def test_extract_returns_a_schema_valid_object(stack: Stack) -> None:
    s = sample("extract")
    r = stack.acme.post(
        "/v1/extract", json={"schema": s["schema"], "text": s["text"], "timeout_s": 60}
    )
    assert r.status_code == 200, r.text
    obj = r.json()["object"]
    import jsonschema

    jsonschema.validate(obj, s["schema"])


def test_extract_refuses_an_unsupported_schema_with_its_pointer(stack: Stack) -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "https://example.com/x.json"}}}
    r = stack.acme.post("/v1/extract", json={"schema": schema, "text": "hello"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"].startswith("/schema/properties/a")


def test_extract_answers_202_when_not_done_in_time(stack: Stack) -> None:
    s = sample("extract")
    r = stack.acme.post(
        "/v1/extract", json={"schema": s["schema"], "text": s["text"], "timeout_s": 0}
    )
    assert r.status_code == 202, r.text
    final = wait_finished(stack.acme, r.json()["id"])
    assert final["status"] == "succeeded"


def test_extract_from_document_chunks_with_examples(stack: Stack) -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["company", "city"],
        "properties": {
            "company": {"type": "string", "maxLength": 60},
            "city": {"type": "string", "maxLength": 40},
        },
    }
    r = stack.acme.post(
        "/v1/extract",
        json={
            "schema": schema,
            "document": ["Contoso Ltd makes bicycles.", "Its head office is in Lisbon."],
            "examples": [
                {
                    "text": "Fabrikam builds drones in Oslo.",
                    "output": {"company": "Fabrikam", "city": "Oslo"},
                }
            ],
            "instructions": "Name the company and the city of its head office.",
            "timeout_s": 60,
        },
    )
    assert r.status_code == 200, r.text
    import jsonschema

    jsonschema.validate(r.json()["object"], schema)


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"text": "a", "document": ["b"]}, "request.invalid", "/text"),
        ({}, "request.invalid", "/text"),
        (
            {"text": "a", "examples": [{"text": "x", "output": {"n": "not a number"}}]},
            "input.invalid",
            "/examples/0/output/n",
        ),
    ],
)
def test_bad_extract_requests(stack: Stack, body: dict[str, Any], code: str, field: str) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    r = stack.acme.post("/v1/extract", json={"schema": schema, **body})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["field"] == field
