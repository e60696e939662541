"""Run events and records become choices, chunks and Response events: restarts, failures,
several choices, and every object as the SDK's types read it."""

from __future__ import annotations

import json
from typing import Any

import openai.types.chat as chat_types
import openai.types.responses as responses_types
import pytest

from sgflow.errors import SgflowError
from sgflow.openai import (
    ChatStream,
    Plan,
    ResponsesStream,
    RunFold,
    RunRecord,
    chat_completion,
    parse_chat_request,
    parse_responses_request,
    plan_chat,
    plan_responses,
    response_object,
)
from sgflow.openai.outcome import final_choices

USER = [{"role": "user", "content": "hi"}]
TAGS = {"type": "object", "properties": {"t": {"type": "string"}}, "required": ["t"]}


def chat_plan(**body: Any) -> Plan:
    return plan_chat(parse_chat_request({"model": "m", "messages": USER, **body}))


def delta(
    step: str, text: str, branch: int | None = None, attempt: int = 1
) -> tuple[str, dict[str, Any]]:
    return "step.delta", {"step": step, "branch": branch, "attempt": attempt, "text": text}


def finished(
    step: str, value: Any, branch: int | None = None, tokens: int = 5
) -> tuple[str, dict[str, Any]]:
    usage = {"prompt_tokens": 10, "cached_tokens": 4, "completion_tokens": tokens}
    return "step.finished", {
        "step": step,
        "branch": branch,
        "status": "ok",
        "value": value,
        "usage": usage,
    }


def record(status: str = "succeeded", **kw: Any) -> RunRecord:
    return RunRecord(id="r1", status=status, created_at=1_700_000_000.0, **kw)


def chunks(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]


def test_a_restart_before_anything_was_sent_is_invisible() -> None:
    stream = ChatStream(chat_plan(), run_id="r1", created=0)
    out = stream.start() + stream.feed("run.retrying", {}) + stream.feed(*delta("answer", "Hel"))
    out += stream.feed(*delta("answer", "lo")) + stream.feed(*finished("answer", "Hello"))
    out += stream.finish(record(output=[{"answer": "Hello"}], usage={"completion_tokens": 2}))
    contents = [c["choices"][0]["delta"].get("content") for c in chunks(out) if c["choices"]]
    assert "".join(x for x in contents if x) == "Hello" and out.endswith("data: [DONE]\n\n")


def test_a_restart_after_text_was_sent_ends_the_stream_with_an_error() -> None:
    stream = ChatStream(chat_plan(), run_id="r1", created=0)
    out = stream.start() + stream.feed(*delta("answer", "Hel")) + stream.feed("run.requeued", {})
    assert stream.closed and chunks(out)[-1]["error"]["code"] == "stream.restarted"
    assert stream.feed(*delta("answer", "Hello")) == "" and stream.finish(record()) == ""


def test_chunks_are_the_sdks_and_the_role_comes_once_per_choice() -> None:
    plan = chat_plan(n=2, stream=True, stream_options={"include_usage": True})
    stream = ChatStream(plan, run_id="r1", created=0)
    out = stream.start()
    out += stream.feed(*delta("answer", "a", branch=1)) + stream.feed(
        *delta("answer", "b", branch=0)
    )
    out += stream.finish(
        record(output=[{"answer": "b"}, {"answer": "a"}], usage={"prompt_tokens": 20})
    )
    parsed = [chat_types.ChatCompletionChunk.model_validate(c) for c in chunks(out)]
    assert [c.index for c in parsed[0].choices] == [0, 1]
    roles = [ch.delta.role for c in parsed for ch in c.choices if ch.delta.role]
    assert roles == ["assistant", "assistant"]
    assert (
        parsed[-1].choices == []
        and parsed[-1].usage is not None
        and parsed[-1].usage.prompt_tokens == 20
    )
    assert all(c.usage is None for c in parsed[:-1])
    assert [(ch.index, ch.finish_reason) for ch in parsed[-2].choices] == [(0, "stop"), (1, "stop")]


def test_a_stream_can_finish_from_its_events_alone() -> None:
    plan = chat_plan(
        tools=[{"type": "function", "function": {"name": "f"}}],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    stream = ChatStream(plan, run_id="r1", created=0)
    call = '{"name": "f", "arguments": {}}'
    out = (
        stream.start()
        + stream.feed(*delta("calls", call))
        + stream.feed(*finished("calls", json.loads(call)))
    )
    out += stream.feed("run.finished", {"status": "succeeded", "error": None})
    out += stream.finish(None)
    final = chunks(out)
    assert final[-1]["choices"][0]["finish_reason"] == "tool_calls"
    tool_deltas = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in final
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert tool_deltas[0]["id"] == "call_r1_0_0" and tool_deltas[0]["function"]["name"] == "f"
    assert all("function" in d for d in tool_deltas) and all("id" not in d for d in tool_deltas[1:])
    assert "".join(d["function"]["arguments"] for d in tool_deltas) == "{}"


def test_without_events_a_cut_off_answer_has_no_content() -> None:
    completion = chat_completion(
        chat_plan(), record("failed", error={"code": "output.truncated", "message": "cut"})
    )
    choice = chat_types.ChatCompletion.model_validate(completion).choices[0]
    assert (choice.finish_reason, choice.message.content) == ("length", None)


@pytest.mark.parametrize(
    ("status", "code"),
    [("failed", "output.invalid"), ("failed", "run.timeout"), ("cancelled", "run.cancelled")],
)
def test_other_failures_are_the_runs_error(status: str, code: str) -> None:
    with pytest.raises(SgflowError) as info:
        chat_completion(chat_plan(), record(status, error={"code": code, "message": "no"}))
    assert info.value.code == code and info.value.extra["run"] == "r1"


def test_a_failed_stream_ends_with_the_error_event() -> None:
    stream = ChatStream(chat_plan(), run_id="r1", created=0)
    out = stream.start() + stream.finish(
        record("failed", error={"code": "run.timeout", "message": "late"})
    )
    assert chunks(out)[-1]["error"]["code"] == "run.timeout" and "[DONE]" not in out


def test_a_buffered_answer_is_sent_whole_once_it_validated() -> None:
    schema = {**TAGS, "properties": {"t": {"type": "array", "uniqueItems": True}}}
    plan = chat_plan(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    )
    assert not plan.live
    fold = RunFold(plan)
    assert fold.feed(*delta("answer", '{"t": [1, 1]}')) == []
    assert fold.feed("step.invalid", {"step": "answer", "attempt": 1, "errors": []}) == []
    assert fold.feed(*delta("answer", '{"t": [1, 2]}', attempt=2)) == []
    (piece,) = fold.feed(*finished("answer", {"t": [1, 2]}))
    assert json.loads(piece.text) == {"t": [1, 2]} and not fold.broken


def test_the_truncated_choice_of_several_keeps_its_partial_text() -> None:
    plan = chat_plan(n=2, response_format={"type": "json_object"})
    fold = RunFold(plan)
    for event in [
        delta("answer", '{"a": 1}', 0),
        finished("answer", {"a": 1}, 0),
        delta("answer", '{"b": "x', 1),
    ]:
        fold.feed(*event)
    choices, usage = final_choices(
        plan, record("failed", error={"code": "output.truncated", "message": "cut"}), fold
    )
    assert [(c.finish_reason, c.text) for c in choices] == [
        ("stop", '{"a": 1}'),
        ("length", '{"b": "x'),
    ]
    assert usage.completion_tokens == 5


def test_the_finish_reason_of_a_text_answer_comes_from_the_trace() -> None:
    trace = ({"step": "answer", "branch": None, "finish_reason": {"type": "length"}},)
    completion = chat_completion(chat_plan(), record(output=[{"answer": "so"}], trace=trace))
    assert completion["choices"][0]["finish_reason"] == "length"


def test_validated_keywords_are_named_in_the_answer() -> None:
    schema = {**TAGS, "properties": {"t": {"type": "string", "format": "date"}}}
    plan = chat_plan(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    )
    completion = chat_completion(plan, record(output=[{"answer": {"t": "2024-01-01"}}]))
    (named,) = completion["validated_after"]
    assert (named["param"], named["pointer"], named["keyword"]) == (
        "response_format",
        "/properties/t",
        "format",
    )
    assert "impossible dates" in named["note"]


# -- responses ---------------------------------------------------------------------------------------


def responses_plan(**body: Any) -> Plan:
    return plan_responses(parse_responses_request({"model": "m", "input": "hi", **body}))


def test_the_response_object_is_the_sdks() -> None:
    body = response_object(
        responses_plan(instructions="be terse", metadata={"k": "v"}),
        record(output=[{"answer": "Hello"}], usage={"prompt_tokens": 3}),
    )
    response = responses_types.Response.model_validate(body)
    assert (response.output_text, response.status, response.instructions) == (
        "Hello",
        "completed",
        "be terse",
    )
    assert response.id == "resp_r1" and body["run_id"] == "r1"


def test_a_responses_stream_of_a_cut_off_json_answer_never_says_it_is_done() -> None:
    plan = responses_plan(text={"format": {"type": "json_object"}}, stream=True)
    stream = ResponsesStream(plan, run_id="r1", created=0)
    out = stream.start() + stream.feed(*delta("answer", '{"a": "b'))
    out += stream.finish(record("failed", error={"code": "output.truncated", "message": "cut"}))
    events = chunks(out)
    kinds = [e["type"] for e in events]
    assert "response.output_text.done" not in kinds and kinds[-1] == "response.incomplete"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = responses_types.Response.model_validate(events[-1]["response"])
    assert final.output == [] and final.incomplete_details is not None


def test_a_failed_responses_stream_ends_with_error_then_failed() -> None:
    stream = ResponsesStream(responses_plan(stream=True), run_id="r1", created=0)
    out = stream.start() + stream.finish(
        record("failed", error={"code": "engine.error", "message": "down"})
    )
    events = chunks(out)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["code"] == "engine.error"
    assert responses_types.Response.model_validate(events[-1]["response"]).status == "failed"


def test_a_record_is_read_from_the_services_run_view() -> None:
    from sgflow.service.runs import run_view
    from sgflow.store import Run

    run = Run(
        id="abc",
        tenant="t",
        program="inline",
        program_hash="h",
        inputs={},
        status="succeeded",
        attempt=1,
        lease_until=None,
        worker=None,
        created_at=1_700_000_000.5,
        started_at=None,
        finished_at=None,
        error=None,
        priority=0,
        parent=None,
        cancel_requested=False,
        output={
            "output": [{"answer": "Hi"}],
            "steps": {},
            "trace": [{"step": "answer", "branch": None, "finish_reason": {"type": "stop"}}],
            "usage": {"prompt_tokens": 7, "cached_tokens": 6, "completion_tokens": 1},
        },
    )
    completion = chat_completion(chat_plan(), RunRecord.from_view(run_view(run)))
    parsed = chat_types.ChatCompletion.model_validate(completion)
    assert (parsed.id, parsed.created, parsed.choices[0].message.content) == (
        "chatcmpl-abc",
        1_700_000_000,
        "Hi",
    )
    assert parsed.usage is not None and parsed.usage.prompt_tokens_details is not None
    assert parsed.usage.prompt_tokens_details.cached_tokens == 6


def test_a_program_models_steps_are_not_streamed_only_its_output() -> None:
    from sgflow.openai import plan_program_model
    from sgflow.openai.model_list import ProgramModel

    req = parse_chat_request({"model": "program:p@1", "messages": USER, "stream": True})
    plan = plan_program_model(
        req,
        ProgramModel("p", 1),
        inputs_schema={"type": "object", "properties": {"q": {"type": "string"}}},
    )
    stream = ChatStream(plan, run_id="r1", created=0)
    out = stream.start() + stream.feed(*delta("answer", "its own step named answer"))
    out += stream.finish(record(output={"label": "x"}))
    contents = [c["choices"][0]["delta"].get("content") for c in chunks(out) if c["choices"]]
    assert [c for c in contents if c] == ['{"label": "x"}']
    with pytest.raises(ValueError, match="pass the run record"):
        final_choices(plan, None, stream.fold)


def test_a_restart_keeps_checkpointed_steps_of_one_choice_but_not_of_a_fork() -> None:
    one = RunFold(chat_plan())
    for event in [delta("answer", "Hi"), finished("answer", "Hi"), ("run.retrying", {})]:
        one.feed(*event)
    assert not one.broken, "a finished step is checkpointed: the retry does not redo it"
    several = RunFold(chat_plan(n=2))
    for event in [
        delta("answer", "Hi", 0),
        finished("answer", "Hi", 0),
        ("run.resumed", {"steps": []}),
    ]:
        several.feed(*event)
    assert several.broken, "the fork is generated again from its start"
