"""Run deadlines, streamed ``step.delta`` events and cancellation while a step generates,
through the real API, a real Celery worker process, real Redis and the real engine."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from sgflow.cli import main
from sgflow.client import Client
from sgflow.engine.launcher import EngineProcess
from sgflow.service.runs import MAX_DEADLINE_S
from sgflow.store import RunStore
from tests.service.stack import Stack
from tests.service.test_runs_e2e import sse, wait_finished

pytestmark = pytest.mark.engine

LONG_PROMPT = (
    "Write a long, detailed essay about the history of the Roman Empire, with many sections."
)


def program(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"program": f"p{uuid.uuid4().hex[:8]}", "steps": list(steps)}


def long_step(step_id: str = "long") -> dict[str, Any]:
    return {"id": step_id, "user": LONG_PROMPT, "gen": {"max_tokens": 2000}}


SHORT = program({"id": "a", "user": "Say hi.", "gen": {"max_tokens": 4}})


def engine_idle(engine_url: str, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        info = httpx.get(f"{engine_url}/server_info", timeout=5).json()
        if info["internal_states"][0]["num_running_reqs"] == 0:
            return True
        time.sleep(0.1)
    return False


def kinds_of(events: list[dict[str, Any]], step: str) -> list[str]:
    return [e["event"] for e in events if e["data"].get("step") == step]


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["0", "-5", '"10"', "true", "[]", str(MAX_DEADLINE_S + 1)],
)
def test_a_bad_deadline_is_a_422_naming_the_field_and_limit(stack: Stack, raw: str) -> None:
    body = f'{{"program": {json.dumps(SHORT)}, "inputs": {{}}, "deadline_s": {raw}}}'
    r = stack.acme.post("/v1/runs", content=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "request.invalid"
    assert error["field"] == "/deadline_s"
    assert error["limit"] == MAX_DEADLINE_S
    assert "deadline_s" in error["message"]


@pytest.mark.parametrize("raw", ["1e400", "NaN", "Infinity"])
def test_a_non_finite_deadline_is_refused_by_the_json_reader_naming_the_field(
    stack: Stack, raw: str
) -> None:
    body = f'{{"program": {json.dumps(SHORT)}, "inputs": {{}}, "deadline_s": {raw}}}'
    r = stack.acme.post("/v1/runs", content=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "json.non_finite"
    assert error["field"] == "/deadline_s"
    assert raw in error["message"]


def test_deadline_at_is_in_the_run_and_the_client_sends_it(stack: Stack) -> None:
    with Client(stack.url, stack.acme_key) as api:
        run = api.submit(SHORT, {}, deadline_s=600)
        assert run["deadline_at"] == pytest.approx(run["created_at"] + 600, abs=1)
        final = api.wait(run["id"], timeout=120)
        assert api.submit(SHORT, {}, deadline_s=None)["deadline_at"] is None
    assert final["status"] == "succeeded", final["error"]
    assert final["deadline_at"] == run["deadline_at"]


# -- deadlines -------------------------------------------------------------------------------


def test_a_run_past_its_deadline_before_it_started_fails_without_running(stack: Stack) -> None:
    r = stack.acme.post("/v1/runs", json={"program": SHORT, "deadline_s": 0.001})
    assert r.status_code == 202, r.text
    final = wait_finished(stack.acme, r.json()["id"], timeout=60)
    assert final["status"] == "failed"
    assert final["error"]["code"] == "run.deadline_exceeded"
    kinds = [e["event"] for e in sse(stack.acme, final["events_url"])]
    assert kinds == ["run.queued", "run.finished"]


def test_the_reaper_fails_a_queued_run_nobody_claims_at_its_deadline(stack: Stack) -> None:
    store = RunStore(stack.redis, prefix=stack.prefix)
    run_id = uuid.uuid4().hex
    # stored without a Celery message: only the workers' reaper can end it
    store.create(
        run_id=run_id,
        tenant="acme",
        program="inline",
        program_hash="sha256:none",
        inputs={},
        deadline_at=time.time() + 0.5,
    )
    final = wait_finished(stack.acme, run_id, timeout=20)
    assert final["status"] == "failed"
    assert final["error"]["code"] == "run.deadline_exceeded"
    assert final["attempt"] == 0 and final["started_at"] is None
    assert not stack.redis.zscore(store.keys.deadlines, run_id)


def test_a_running_run_is_stopped_at_its_deadline(stack: Stack, engine: EngineProcess) -> None:
    body = program({"id": "first", "user": "Say hi.", "gen": {"max_tokens": 4}}, long_step())
    r = stack.acme.post("/v1/runs", json={"program": body, "deadline_s": 10})
    assert r.status_code == 202, r.text
    final = wait_finished(stack.acme, r.json()["id"], timeout=60)
    assert final["status"] == "failed", (final["steps"], final["trace"])
    assert final["error"]["code"] == "run.deadline_exceeded"
    assert final["finished_at"] < final["deadline_at"] + 3  # stopped mid-step, not after it
    events = sse(stack.acme, final["events_url"])
    assert "run.started" in [e["event"] for e in events]
    assert kinds_of(events, "first")[-1] == "step.finished"  # checkpointed: kept
    long = kinds_of(events, "long")
    assert long and long[0] == "step.started" and "step.finished" not in long
    assert engine_idle(engine.url)


# -- step.delta --------------------------------------------------------------------------------


def test_deltas_arrive_between_started_and_finished_and_survive_a_reconnect(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    body = program({"id": "story", "user": LONG_PROMPT, "gen": {"max_tokens": 60}})
    r = stack.acme.post("/v1/runs", json={"program": body})
    assert r.status_code == 202, r.text
    events = sse(stack.acme, r.json()["events_url"])
    final = wait_finished(stack.acme, r.json()["id"])
    assert final["status"] == "succeeded", final["error"]
    story = kinds_of(events, "story")
    assert story[0] == "step.started" and story[-1] == "step.finished"
    assert set(story[1:-1]) == {"step.delta"} and len(story) >= 3
    deltas = [e["data"] for e in events if e["event"] == "step.delta"]
    assert all(d["branch"] is None and d["attempt"] == 1 for d in deltas)
    assert "".join(d["text"] for d in deltas) == final["steps"]["story"]
    # deltas are not step results: no checkpoint, no trace entry of their own
    assert [t["step"] for t in final["trace"]] == ["story"]
    first_delta = next(i for i, e in enumerate(events) if e["event"] == "step.delta")
    rest = sse(stack.acme, final["events_url"], last_event_id=events[first_delta]["id"])
    assert [e["id"] for e in rest] == [e["id"] for e in events[first_delta + 1 :]]
    # sgflow watch shows the streamed text (stderr), the step lines and output on stdout
    assert main(["watch", final["id"], *stack.acme_cli]) == 0
    out, err = capsys.readouterr()
    assert f"story> {final['steps']['story']}\n" in err
    assert "story: started" in out.splitlines()
    assert main(["watch", final["id"], "--no-text", *stack.acme_cli]) == 0
    assert "story>" not in capsys.readouterr().err


# -- cancellation while streaming ----------------------------------------------------------------


def test_cancel_stops_a_step_while_it_generates(stack: Stack, engine: EngineProcess) -> None:
    with Client(stack.url, stack.acme_key) as api:
        run = api.submit(program(long_step()), {})
        seen: list[str] = []
        for event in api.events(run["id"]):
            seen.append(event.kind)
            if event.kind == "step.delta":
                break
        cancelled_at = time.monotonic()
        assert api.cancel(run["id"])["cancel"] == "requested"
        final = api.wait(run["id"], timeout=30, poll_s=0.1)
        took = time.monotonic() - cancelled_at
        events = list(api.events(run["id"]))
    assert final["status"] == "cancelled", final
    assert final["error"]["code"] == "run.cancelled"
    assert took < 5, took  # 2000 tokens take ~15 s at the engine's best speed here
    long = [e.kind for e in events if e.data.get("step") == "long"]
    assert long[0] == "step.started" and "step.finished" not in long
    deltas = long.count("step.delta")
    assert 1 <= deltas <= 4 * (final["finished_at"] - final["started_at"]) + 2  # throttled
    kinds = [e.kind for e in events]
    assert "run.cancel_requested" in kinds and kinds[-1] == "run.finished"
    assert engine_idle(engine.url)
