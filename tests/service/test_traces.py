"""Traces of real runs through the real service: the API in this process, its spans caught
by the OpenTelemetry SDK's in-memory exporter; a real Celery worker process exporting its
spans over OTLP/HTTP (switched on by ``SGFLOW_OTLP_ENDPOINT``, as an operator would) to a
receiver in this process; the real engine with the real model. The span tree is checked
across the two: API request → run → each step → each engine call, and batch → lines."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sgflow import traces
from sgflow.engine.launcher import EngineProcess
from sgflow.logs import JsonFormatter
from sgflow.settings import Settings
from tests.service.otlp_receiver import OtlpReceiver, Span, from_sdk
from tests.service.stack import Stack

PROGRAM: dict[str, Any] = {
    "program": "traced",
    "version": 1,
    "inputs": {
        "type": "object",
        "properties": {"topic": {"type": "string", "maxLength": 100}},
        "required": ["topic"],
    },
    "steps": [
        {
            "id": "idea",
            "user": "One short sentence about {{ inputs.topic }}.",
            "gen": {"max_tokens": 12},
        },
        {
            "id": "facts",
            "user": "Name the topic as JSON.",
            "gen": {
                "max_tokens": 40,
                "json_schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "maxLength": 16}},
                    "required": ["name"],
                    "additionalProperties": False,
                },
            },
        },
        {"id": "mood", "user": "Is it good?", "select": ["yes", "no"]},
        {
            "id": "each",
            "fork": {
                "n": 2,
                "as": "i",
                "steps": [{"id": "word", "user": "One word.", "gen": {"max_tokens": 3}}],
            },
        },
    ],
}
CLIENT_TRACE = uuid.uuid4().hex
CLIENT_SPAN = uuid.uuid4().hex[:16]


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, InMemorySpanExporter, OtlpReceiver]]:
    receiver = OtlpReceiver()
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    before = traces.install(provider)
    exporting = {"SGFLOW_OTLP_ENDPOINT": receiver.url}
    engine = EngineProcess("--threads", "2", env={**os.environ, **exporting})  # exports too
    stack = Stack(
        engine.url,
        worker_env=exporting,
        worker_log=tmp_path_factory.mktemp("worker") / "worker.log",
    )
    try:
        yield stack, memory, receiver
    finally:
        stack.close()
        engine.stop()
        traces.install(before)
        receiver.close()


def _wait_for(check: Callable[[], Any], what: str, timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _finished(client: httpx.Client, run_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        run = client.get(f"/v1/runs/{run_id}").json()
        return run if run["status"] in ("succeeded", "failed", "cancelled") else None

    return _wait_for(check, f"run {run_id} to finish")


def _children(spans: list[Span], parent: Span) -> list[Span]:
    return [s for s in spans if s.parent_id == parent.span_id]


def test_a_multi_step_run_is_one_span_tree_from_the_api_request_to_each_engine_call(
    traced: tuple[Stack, InMemorySpanExporter, OtlpReceiver],
) -> None:
    stack, memory, receiver = traced
    answer = stack.acme.post(
        "/v1/runs",
        json={"program": PROGRAM, "inputs": {"topic": "tea"}},
        headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
    )
    assert answer.status_code == 202, answer.text
    assert answer.headers["traceparent"].split("-")[1] == CLIENT_TRACE
    run = _finished(stack.acme, answer.json()["id"])
    assert run["status"] == "succeeded", run["error"]
    assert run["trace_id"] == CLIENT_TRACE  # the caller's trace is continued
    assert "tea" in run["trace"][0]["prompt"]  # the step's rendered prompt

    # the API's request span, a child of the caller's span
    api = [from_sdk(s) for s in memory.get_finished_spans()]
    request = next(s for s in api if s.name == "POST /v1/runs" and s.trace_id == CLIENT_TRACE)
    assert request.parent_id == CLIENT_SPAN and request.kind == "SERVER"
    assert request.attributes["http.response.status_code"] == 202
    assert request.attributes["http.route"] == "/v1/runs"

    # the worker's spans, exported over OTLP; they come in batches a second apart
    n_steps = len(run["trace"])  # idea, facts, mood, each, and the fork's two `word`s

    def worker_spans() -> list[Span] | None:
        got = receiver.of_trace(CLIENT_TRACE)
        steps = [s for s in got if s.name.startswith("step ")]
        calls = [s for s in got if s.name.startswith("engine.") and s.kind == "CLIENT"]
        served = {s.parent_id for s in got if s.name == "engine /generate"}
        done = len(steps) >= n_steps and any(s.name.startswith("run ") for s in got)
        return got if done and {c.span_id for c in calls} <= served else None

    spans = _wait_for(worker_spans, "the worker's and the engine's spans")
    assert {s.service for s in spans} == {"sgflow-worker", "sgflow-engine"}
    (run_span,) = [s for s in spans if s.name == "run inline"]
    assert run_span.parent_id == request.span_id, "the run continues the request's span"
    assert run_span.kind == "CONSUMER" and not run_span.error
    assert run_span.attributes["sgflow.run.id"] == run["id"]
    assert run_span.attributes["sgflow.run.status"] == "succeeded"
    assert run_span.attributes["gen_ai.usage.output_tokens"] == run["usage"]["completion_tokens"]

    top = {s.attributes["sgflow.step.id"]: s for s in _children(spans, run_span)}
    assert sorted(top) == ["each", "facts", "idea", "mood"]
    by_step = {(t["step"], t["branch"]): t for t in run["trace"]}
    for step_id, span in top.items():
        trace = by_step[(step_id, None)]
        assert span.name == f"step {step_id}"
        assert span.attributes["sgflow.constraint.kind"] == trace["constraint"]
        assert span.attributes["sgflow.attempts"] == trace["attempts"]
        assert span.attributes["gen_ai.usage.output_tokens"] == trace["completion_tokens"]
        assert span.attributes["sgflow.cached_tokens"] == trace["cached_tokens"]
        assert span.attributes["sgflow.step.status"] == "ok"

    # each engine call is a CLIENT span under its step, with its own tokens
    (idea_call,) = _children(spans, top["idea"])
    assert idea_call.name == "engine.generate" and idea_call.kind == "CLIENT"
    assert idea_call.attributes["sgflow.constraint.kind"] == "free"
    assert (
        idea_call.attributes["gen_ai.usage.output_tokens"]
        == by_step[("idea", None)]["completion_tokens"]
    )
    facts_calls = sorted(
        _children(spans, top["facts"]), key=lambda s: s.attributes["sgflow.attempt"]
    )
    assert len(facts_calls) == by_step[("facts", None)]["attempts"]
    assert all(c.attributes["sgflow.constraint.kind"] == "json_schema" for c in facts_calls)
    assert facts_calls[-1].attributes["sgflow.validation.valid"] is True
    assert top["facts"].attributes["sgflow.validation.valid"] is True
    (mood_call,) = _children(spans, top["mood"])
    assert mood_call.name == "engine.select" and mood_call.attributes["sgflow.choices"] == 2

    # the engine continues each call: its own span, and where the time went in it
    for call in [idea_call, *facts_calls, mood_call]:
        served = [s for s in _children(spans, call) if s.name == "engine /generate"]
        assert served and all(s.service == "sgflow-engine" for s in served), call.name
        for engine_span in served:
            assert engine_span.kind == "SERVER"
            parts = sorted(s.name for s in _children(spans, engine_span))
            assert parts == ["engine.decode", "engine.prefill", "engine.prepare", "engine.queue"]
    (idea_served,) = _children(spans, idea_call)
    assert (
        idea_served.attributes["gen_ai.usage.output_tokens"]
        == by_step[("idea", None)]["completion_tokens"]
    )
    assert _children(spans, facts_calls[-1])[0].attributes["sgflow.constraint.kind"] == (
        "json_schema"
    )

    # the fork's branches are steps under the fork, each with its engine call
    branches = _children(spans, top["each"])
    assert sorted(s.attributes["sgflow.step.branch"] for s in branches) == [0, 1]
    for branch in branches:
        assert branch.name == "step word"
        assert [c.name for c in _children(spans, branch)] == ["engine.generate"]

    # the worker's log lines about the run carry its trace id
    assert stack._log is not None

    def logged() -> list[dict[str, Any]]:
        lines = Path(stack._log.name).read_text().splitlines()
        entries = [json.loads(x) for x in lines if x.startswith("{")]
        return [
            e for e in entries if e.get("run_id") == run["id"] and e["msg"] == "run attempt ended"
        ]

    (line,) = _wait_for(logged, "the worker's log line")
    assert line["trace_id"] == CLIENT_TRACE and line["span_id"] == run_span.span_id

    # the run's events carry its trace id
    with stack.acme.stream("GET", f"/v1/runs/{run['id']}/events") as events:
        datas = [json.loads(line[5:]) for line in events.iter_lines() if line.startswith("data:")]
    assert datas and all(d["trace_id"] == CLIENT_TRACE for d in datas)


def test_a_failed_run_is_a_failed_span_with_its_error_code(
    traced: tuple[Stack, InMemorySpanExporter, OtlpReceiver],
) -> None:
    stack, _, receiver = traced
    # `not` is validated after generation, not enforced: every answer the grammar allows
    # has a `name`, so every answer is invalid, and the policy fails at the first
    facts = json.loads(json.dumps(PROGRAM["steps"][1]))
    facts["gen"]["json_schema"]["not"] = {"required": ["name"]}
    program = {**PROGRAM, "steps": [facts], "policy": {"on_invalid": "fail"}}
    answer = stack.acme.post("/v1/runs", json={"program": program, "inputs": {"topic": "tea"}})
    assert answer.status_code == 202, answer.text
    run = _finished(stack.acme, answer.json()["id"])
    assert run["status"] == "failed" and run["error"]["code"] == "output.invalid", run["error"]
    trace_id = run["trace_id"]
    assert trace_id and len(trace_id) == 32

    def failed_step() -> list[Span] | None:
        got = receiver.of_trace(trace_id)
        return got if any(s.name == "step facts" for s in got) else None

    spans = _wait_for(failed_step, "the failed run's spans")
    (run_span,) = [s for s in spans if s.name == "run inline"]
    assert run_span.error and run_span.attributes["sgflow.error.code"] == "output.invalid"
    assert run_span.attributes["sgflow.run.status"] == "failed"
    (step,) = _children(spans, run_span)
    assert step.error and step.attributes["sgflow.error.code"] == "output.invalid"
    assert step.attributes["sgflow.step.status"] == "failed"
    assert step.attributes["sgflow.validation.valid"] is False
    (call,) = _children(spans, step)
    assert call.attributes["sgflow.validation.valid"] is False
    assert call.attributes["sgflow.validation.errors"], "the errors, with their pointers"


def test_a_batch_is_a_span_whose_lines_runs_are_its_children(
    traced: tuple[Stack, InMemorySpanExporter, OtlpReceiver],
) -> None:
    stack, memory, receiver = traced
    program = {**PROGRAM, "steps": PROGRAM["steps"][:1]}
    answer = stack.acme.post(
        "/v1/batches",
        json={
            "program": program,
            "inputs": [{"custom_id": c, "inputs": {"topic": c}} for c in ("tea", "rain")],
        },
    )
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["id"]
    api = [from_sdk(s) for s in memory.get_finished_spans()]
    (batch,) = [s for s in api if s.name == "batch" and s.attributes["sgflow.batch.id"] == batch_id]
    (request,) = [s for s in api if s.span_id == batch.parent_id]
    assert request.name == "POST /v1/batches" and batch.attributes["sgflow.batch.lines"] == 2

    def line_runs() -> list[Span] | None:
        got = [s for s in receiver.of_trace(batch.trace_id) if s.parent_id == batch.span_id]
        runs = [s for s in got if s.name.startswith("run ")]
        return got if len(runs) == 2 and any(s.name == "batch.start" for s in got) else None

    children = _wait_for(line_runs, "the batch's lines")
    runs = [s for s in children if s.name.startswith("run ")]
    assert {s.attributes["sgflow.batch.id"] for s in runs} == {batch_id}
    assert all(s.attributes["sgflow.run.status"] == "succeeded" for s in runs)
    # a batch line's trace keeps its numbers, not its rendered prompt (Redis holds 10,000)
    line = stack.acme.get(f"/v1/runs/{runs[0].attributes['sgflow.run.id']}").json()
    assert line["batch"] == batch_id
    assert line["trace"][0]["completion_tokens"] > 0 and line["trace"][0]["prompt"] == ""


def test_an_error_answer_is_a_request_span_with_its_code(
    traced: tuple[Stack, InMemorySpanExporter, OtlpReceiver],
) -> None:
    stack, memory, _ = traced
    answer = stack.acme.post("/v1/runs", json={"program": PROGRAM, "inputs": {"topic": 5}})
    assert answer.status_code == 422
    trace_id = answer.headers["traceparent"].split("-")[1]
    (span,) = [
        s for s in (from_sdk(x) for x in memory.get_finished_spans()) if s.trace_id == trace_id
    ]
    assert span.name == "POST /v1/runs" and not span.error  # a 4xx is the caller's, not ours
    assert span.attributes["sgflow.error.code"] == "input.invalid"
    assert span.attributes["http.response.status_code"] == 422


def test_log_lines_written_in_a_span_carry_its_trace_and_span_ids() -> None:
    record = logging.LogRecord("sgflow.test", logging.INFO, __file__, 1, "inside", None, None)
    outside = json.loads(JsonFormatter().format(record))
    assert "trace_id" not in outside
    provider = TracerProvider()
    before = traces.install(provider)
    try:
        with traces.span("work"):
            ids = traces.current_ids()
            line = json.loads(JsonFormatter().format(record))
    finally:
        traces.install(before)
    assert ids is not None and (line["trace_id"], line["span_id"]) == ids


def test_export_is_off_by_default_and_on_with_an_endpoint() -> None:
    before = traces.install(TracerProvider())
    receiver = OtlpReceiver()
    try:
        quiet = traces.configure(Settings(), "sgflow-test")
        assert not quiet._active_span_processor._span_processors  # made, never exported
        traces.configure(
            Settings(otlp_endpoint=receiver.url, otlp_headers="x-collector-key=abc"),
            "sgflow-test",
        )
        with traces.span("probe"):
            pass
        traces.shutdown()  # flushes
        (probe,) = _wait_for(lambda: [s for s in receiver.spans if s.name == "probe"], "probe")
        assert probe.service == "sgflow-test"
    finally:
        traces.configure(Settings(), "sgflow-test")  # shuts the exporting one down
        traces.install(before)
        receiver.close()
    with pytest.raises(ValueError, match="otlp_headers"):
        Settings(otlp_headers="no equals sign")
    with pytest.raises(ValueError, match="http"):
        Settings(otlp_endpoint="collector:4318")


def test_probes_and_scrapes_make_no_spans(
    traced: tuple[Stack, InMemorySpanExporter, OtlpReceiver],
) -> None:
    stack, memory, _ = traced
    quiet = {"/healthz", "/readyz", "/metrics", "/playground/", "/playground/app.js"}
    for path in (*quiet, "/v1/runs"):
        stack.acme.get(path)
    paths = {from_sdk(s).attributes.get("url.path") for s in memory.get_finished_spans()}
    assert "/v1/runs" in paths  # the request that is traced is there
    assert not paths & quiet
