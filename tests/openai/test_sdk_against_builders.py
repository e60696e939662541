"""The real ``openai`` SDK against sgflow's OpenAI core, with only the engine faked.

Each request goes through the SDK (strict response validation on) into an ``httpx2``
mock transport whose handler (tests/openai/fake_engine.py ``Service``) does what the
service's routes will: parse, plan, run the planned program through the real checker,
compiler and executor on a fake engine with canned model output, then answer with the
builders (``chat_completion``, ``ChatStream``, ``response_object``, ``ResponsesStream``,
``openai_error``). The names end in ``_sdk_against_builders``: no model runs here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import pydantic_function_tool
from pydantic import BaseModel

import sgflow.execution.executor as executor
from sgflow.programs.checker import load_program
from tests.openai.fake_engine import FakeEngine, Service
from tests.openai.sdk import client

ASK = [{"role": "user", "content": "how can I solve 8x + 7 = -23"}]
MATH = (
    '{"steps": [{"explanation": "Subtract 7", "output": "8x = -30"}, '
    '{"explanation": "Divide by 8", "output": "x = -3.75"}], "final_answer": "x = -3.75"}'
)


class Step(BaseModel):
    explanation: str
    output: str


class MathReasoning(BaseModel):
    steps: list[Step]
    final_answer: str


class Weather(BaseModel):
    city: str
    days: int


class Tags(BaseModel):
    tags: list[str]


@pytest.fixture(autouse=True)
def every_delta(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deltas as small as the fake engine's pieces (no 0.25 s batching), so streams have
    many chunks to check."""
    monkeypatch.setattr(executor, "DELTA_INTERVAL_S", 0.0)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def service(engine: FakeEngine) -> Service:
    return Service(engine)


@pytest.fixture
def sdk(service: Service) -> Iterator[openai.OpenAI]:
    with client(service) as c:
        yield c


# -- chat.completions ------------------------------------------------------------------------------


def test_create_answers_text_with_usage_and_the_run_id_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    engine.replies = ["Subtract 7, then divide by 8."]
    completion = sdk.chat.completions.create(model="smollm2", messages=ASK, temperature=0)
    choice = completion.choices[0]
    assert choice.message.content == "Subtract 7, then divide by 8."
    assert (choice.finish_reason, choice.message.role, choice.index) == ("stop", "assistant", 0)
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == engine.cached_tokens
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    run_id = completion.run_id  # type: ignore[attr-defined]
    assert completion._request_id == run_id and completion.id == f"chatcmpl-{run_id}"
    assert engine.calls[0].params["temperature"] == 0


def test_parse_returns_the_model_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    engine.replies = [MATH]
    completion = sdk.chat.completions.parse(
        model="smollm2",
        messages=[{"role": "system", "content": "You are a helpful math tutor."}, *ASK],
        response_format=MathReasoning,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, MathReasoning) and parsed.final_answer == "x = -3.75"
    schema = json.loads(engine.calls[0].params["json_schema"])
    assert schema["$defs"]["Step"]["additionalProperties"] is False, "generated under the schema"


def test_stream_gives_growing_partial_objects_then_the_model_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    engine.replies = [MATH]
    partials: list[Any] = []
    with sdk.chat.completions.stream(
        model="smollm2",
        messages=ASK,
        response_format=MathReasoning,
        stream_options={"include_usage": True},
    ) as stream:
        for event in stream:
            if event.type == "content.delta" and event.parsed is not None:
                partials.append(event.parsed)
        final = stream.get_final_completion()
    assert len(partials) > 10 and partials[-1] == json.loads(MATH)
    assert partials[5] != partials[-1], "parsed while it was generated, not at the end"
    keys = [len(p.get("steps", [])) for p in partials]
    assert keys == sorted(keys), "each partial object extends the one before"
    assert final.choices[0].message.parsed == MathReasoning.model_validate_json(MATH)
    assert final.usage is not None and final.usage.prompt_tokens_details is not None
    assert final.usage.prompt_tokens_details.cached_tokens == engine.cached_tokens


def test_a_cut_off_structured_answer_raises_length_error_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    cut = '{"steps": [{"explanation": "Subtract'
    # not streamed: nobody has seen the cut-off text, so it is generated again (3 attempts)
    engine.replies = [(cut, "length")] * 3
    with pytest.raises(openai.LengthFinishReasonError):
        sdk.chat.completions.parse(
            model="m", messages=ASK, response_format=MathReasoning, max_tokens=8
        )
    assert len(engine.calls) == 3 and not engine.replies
    engine.replies = [(cut, "length")]  # streamed: the text the client has, never again
    with (
        pytest.raises(openai.LengthFinishReasonError),
        sdk.chat.completions.stream(
            model="m", messages=ASK, response_format=MathReasoning, max_tokens=8
        ) as stream,
    ):
        for _ in stream:
            pass
    engine.replies = [(cut, "length")] * 3
    raw = sdk.chat.completions.create(
        model="m",
        messages=ASK,
        max_tokens=8,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "m", "schema": MathReasoning.model_json_schema()},
        },
    )
    assert (raw.choices[0].finish_reason, raw.choices[0].message.content) == ("length", cut)


def test_a_cut_off_text_answer_is_length_with_its_text_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    engine.replies = [("Subtract seven from both", "length")]
    completion = sdk.chat.completions.create(model="m", messages=ASK, max_tokens=5)
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Subtract seven from both"


def test_strict_tools_give_parsed_arguments_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    engine.replies = ['{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}']
    completion = sdk.chat.completions.parse(
        model="m",
        messages=[{"role": "user", "content": "Weather in Paris for 3 days?"}],
        tools=[pydantic_function_tool(Weather, name="get_weather")],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert call.function.parsed_arguments == Weather(city="Paris", days=3)
    assert call.id.startswith("call_")


def test_streamed_parallel_calls_after_an_auto_choice_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    engine.choose = lambda prompt, choices: "call"
    engine.replies = [
        '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}, '
        '{"name": "get_weather", "arguments": {"city": "Rome", "days": 1}}]'
    ]
    done: list[Any] = []
    deltas = 0
    with sdk.chat.completions.stream(
        model="m",
        messages=[{"role": "user", "content": "Paris and Rome?"}],
        tools=[pydantic_function_tool(Weather, name="get_weather")],
    ) as stream:
        for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                deltas += 1
            if event.type == "tool_calls.function.arguments.done":
                done.append(event.parsed_arguments)
        final = stream.get_final_completion()
    assert done == [Weather(city="Paris", days=3), Weather(city="Rome", days=1)]
    assert deltas > 4, "arguments arrive in pieces, as they are generated"
    calls = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert len({c.id for c in calls}) == 2 and final.choices[0].finish_reason == "tool_calls"
    assert engine.calls[0].params == {"select": ["answer", "call"]}


def test_an_auto_choice_to_answer_gives_text_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    engine.choose = lambda prompt, choices: "answer"
    engine.replies = ["No function needed: it is 12:00."]
    completion = sdk.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Hello"}],
        tools=[pydantic_function_tool(Weather, name="get_weather")],
    )
    message = completion.choices[0].message
    assert message.content == "No function needed: it is 12:00." and message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"


def test_n_choices_come_in_index_order_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine, service: Service
) -> None:
    engine.reply = lambda prompt, params: "a reply"
    completion = sdk.chat.completions.create(model="m", messages=ASK, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    with sdk.chat.completions.stream(
        model="m", messages=ASK, n=2, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert [(c.index, c.message.content, c.finish_reason) for c in final.choices] == [
        (0, "a reply", "stop"),
        (1, "a reply", "stop"),
    ]
    assert final.usage is not None and final.usage.prompt_tokens == 2 * engine.prompt_tokens
    assert len(service.runs) == 2, "n choices are one run (a fork), not n"


def test_one_cut_off_choice_of_several_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    calls = 0

    def reply(prompt: str, params: dict[str, Any]) -> Any:
        nonlocal calls  # the first answer is whole; the other branch is cut off every time
        calls += 1
        return '{"tags": ["a"]}' if calls == 1 else ('{"tags": ["b", "c', "length")

    engine.reply = reply
    completion = sdk.chat.completions.create(
        model="m",
        messages=ASK,
        n=2,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "t", "schema": Tags.model_json_schema()},
        },
    )
    outcomes = sorted((c.finish_reason, c.message.content) for c in completion.choices)
    assert outcomes == [("length", '{"tags": ["b", "c'), ("stop", '{"tags": ["a"]}')]


def test_a_repaired_answer_streams_only_the_valid_attempt_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    """``uniqueItems`` is validated after generation: the first attempt is rejected and
    repaired; the client sees only the attempt that validated."""
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}},
        "required": ["tags"],
    }
    engine.replies = ['{"tags": ["x", "x"]}', '{"tags": ["x", "y"]}']
    chunks: list[str] = []
    with sdk.chat.completions.stream(
        model="m",
        messages=ASK,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
    ) as stream:
        for event in stream:
            if event.type == "content.delta" and event.delta:
                chunks.append(event.delta)
        final = stream.get_final_completion()
    assert json.loads("".join(chunks)) == {"tags": ["x", "y"]}
    assert final.choices[0].message.content is not None
    assert json.loads(final.choices[0].message.content) == {"tags": ["x", "y"]}
    assert len(engine.calls) == 2 and "invalid" in engine.calls[1].prompt


def test_a_run_that_restarts_mid_stream_ends_it_with_an_error_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine, service: Service
) -> None:
    def restart(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
        first = next(i for i, (kind, _) in enumerate(events) if kind == "step.delta")
        return [*events[: first + 2], ("run.retrying", {"retry": 1}), *events[first:]]

    service.edit = restart
    engine.replies = ["Subtract 7 from both sides."]
    with (
        pytest.raises(openai.APIError) as info,
        sdk.chat.completions.stream(model="m", messages=ASK) as stream,
    ):
        for _ in stream:
            pass
    assert info.value.code == "stream.restarted"


def test_a_failed_run_is_a_final_error_the_sdk_does_not_retry_sdk_against_builders(
    service: Service, engine: FakeEngine
) -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "uniqueItems": True}},
        "required": ["tags"],
    }
    engine.reply = lambda prompt, params: '{"tags": [1, 1]}'
    retrying = client(service).with_options(max_retries=2)
    with pytest.raises(openai.BadRequestError) as info:
        retrying.chat.completions.create(
            model="m",
            messages=ASK,
            response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
        )
    assert info.value.code == "output.invalid" and len(service.requests) == 1
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(engine.calls) == 3, "three attempts inside the run, one request"


def test_a_schema_outside_the_strict_subset_is_a_bad_request_sdk_against_builders(
    sdk: openai.OpenAI,
) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "allOf": [{"minLength": 1}]}},
        "required": ["a"],
        "additionalProperties": False,
    }
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model="m",
            messages=ASK,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "a", "strict": True, "schema": schema},
            },
        )
    err = info.value
    assert (err.code, err.param, err.type) == (
        "invalid_json_schema",
        "response_format",
        "invalid_request_error",
    )
    assert "'allOf' is not permitted" in err.message and "('properties', 'a')" in err.message
    assert (
        isinstance(err.body, dict)
        and err.body["field"] == "/response_format/json_schema/schema/properties/a"
    )

    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "strict": True,
            "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}},
        },
    }
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="m", messages=ASK, tools=[tool])  # type: ignore[list-item]
    assert (info.value.code, info.value.param) == (
        "invalid_function_parameters",
        "tools[0].function.parameters",
    )

    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.create(
            model="m",
            input="x",
            text={"format": {"type": "json_schema", "name": "a", "strict": True, "schema": schema}},
        )
    assert (info.value.code, info.value.param) == ("invalid_json_schema", "text.format.schema")


def test_an_unknown_parameter_is_a_bad_request_naming_it_sdk_against_builders(
    sdk: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="m", messages=ASK, extra_body={"max_token": 5})
    assert (info.value.code, info.value.param) == ("unknown_parameter", "max_token")


# -- responses -----------------------------------------------------------------------------------------


def test_responses_parse_sdk_against_builders(sdk: openai.OpenAI, engine: FakeEngine) -> None:
    engine.replies = [MATH]
    response = sdk.responses.parse(
        model="m",
        input="how can I solve 8x + 7 = -23",
        instructions="You are a math tutor.",
        text_format=MathReasoning,
    )
    assert response.output_parsed == MathReasoning.model_validate_json(MATH)
    assert response.status == "completed" and response.usage is not None
    assert response.usage.input_tokens_details.cached_tokens == engine.cached_tokens
    assert engine.calls[0].prompt.startswith("<|im_start|>system\nYou are a math tutor.")


def test_responses_stream_sdk_against_builders(sdk: openai.OpenAI, engine: FakeEngine) -> None:
    engine.replies = [MATH]
    kinds: list[str] = []
    with sdk.responses.stream(model="m", input="solve it", text_format=MathReasoning) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_response()
    assert final.output_parsed == MathReasoning.model_validate_json(MATH)
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert kinds.count("response.output_text.delta") > 10


def test_responses_function_calls_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    engine.replies = ['{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}']
    response = sdk.responses.parse(
        model="m",
        input=[{"role": "user", "content": "Oslo?"}],
        tools=[pydantic_function_tool(Weather, name="get_weather")],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    (item,) = response.output
    assert item.type == "function_call" and item.parsed_arguments == Weather(city="Oslo", days=2)
    engine.replies = ["It is 2 C in Oslo."]
    follow_up = sdk.responses.create(
        model="m",
        input=[
            {"role": "user", "content": "Oslo?"},
            *[
                o.model_dump(exclude_none=True, exclude={"parsed_arguments"})
                for o in response.output
            ],  # type: ignore[misc]
            {"type": "function_call_output", "call_id": item.call_id, "output": "2 C"},
        ],
        tools=[pydantic_function_tool(Weather, name="get_weather")],
        tool_choice="none",
    )
    assert follow_up.output_text == "It is 2 C in Oslo."
    assert f"Result of `get_weather` (call {item.call_id}):\n2 C" in engine.calls[-1].prompt


def test_a_cut_off_response_is_incomplete_without_a_half_object_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    engine.replies = [('{"steps": [{"expl', "length")] * 3  # generated again, then cut off
    response = sdk.responses.parse(
        model="m", input="x", text_format=MathReasoning, max_output_tokens=5
    )
    assert response.status == "incomplete" and response.output_parsed is None
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    engine.replies = [("Subtract seven", "length")]
    text = sdk.responses.create(model="m", input="x", max_output_tokens=3)
    assert (text.status, text.output_text) == ("incomplete", "Subtract seven")


# -- programs as models, models, batches ------------------------------------------------------------


class Triage(BaseModel):
    category: str
    urgency: str
    team: str
    reply: dict[str, Any]


def triage_engine(engine: FakeEngine) -> None:
    engine.choose = lambda prompt, choices: choices[1]

    def reply(prompt: str, params: dict[str, Any]) -> str:
        if params.get("regex"):
            return "engineering"
        return '{"subject": "App crash", "body": "We are on it, Dana.", "needs_human": true}'

    engine.reply = reply


def test_a_stored_program_answers_as_a_model_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine, service: Service
) -> None:
    program = load_program("sgflow/programs/library/ticket-triage.yaml")
    service.programs["ticket-triage@1"] = program.model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    triage_engine(engine)
    completion = sdk.chat.completions.parse(
        model="program:ticket-triage@1",
        messages=[{"role": "user", "content": "The app crashes when I open settings."}],
        response_format=Triage,
    )
    parsed = completion.choices[0].message.parsed
    assert parsed == Triage(
        category="bug",
        urgency="medium",
        team="engineering",
        reply={"subject": "App crash", "body": "We are on it, Dana.", "needs_human": True},
    )
    assert completion.run_id == service.runs[-1].record.id  # type: ignore[attr-defined]
    assert "Ticket: The app crashes when I open settings." in engine.calls[0].prompt

    triage_engine(engine)
    with sdk.chat.completions.stream(
        model="program:ticket-triage@1",
        messages=[{"role": "user", "content": '{"ticket": "Refund?", "customer": "Al"}'}],
    ) as stream:
        final = stream.get_final_completion()
    content = final.choices[0].message.content
    assert content is not None and json.loads(content)["team"] == "engineering"

    with pytest.raises(openai.NotFoundError) as info:
        sdk.chat.completions.create(model="program:nope@1", messages=ASK)
    assert info.value.code == "model_not_found"


def test_models_list_engines_and_programs_sdk_against_builders(
    sdk: openai.OpenAI, service: Service
) -> None:
    service.programs["ticket-triage@1"] = {"inputs": {}}
    service.programs["ticket-triage@2"] = {"inputs": {}}
    assert [m.id for m in sdk.models.list()] == [
        "smollm2",
        "program:ticket-triage@1",
        "program:ticket-triage@2",
    ]
    model = sdk.models.retrieve("program:ticket-triage@2")
    assert (model.id, model.owned_by, model.object) == ("program:ticket-triage@2", "acme", "model")


def test_a_batch_file_runs_and_its_output_matches_by_custom_id_sdk_against_builders(
    sdk: openai.OpenAI, engine: FakeEngine
) -> None:
    engine.reply = lambda prompt, params: "4" if "2+2" in prompt else "6"
    lines = [
        {
            "custom_id": f"q{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": q}]},
        }
        for i, q in enumerate(["2+2?", "3+3?"])
    ]
    upload = sdk.files.create(
        file=("in.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode()), purpose="batch"
    )
    assert (upload.purpose, upload.status, upload.filename) == ("batch", "processed", "in.jsonl")
    batch = sdk.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"k": "v"},
    )
    assert batch.status == "completed" and batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.metadata) == (
        2,
        2,
        {"k": "v"},
    )
    assert batch.output_file_id is not None
    results = [json.loads(x) for x in sdk.files.content(batch.output_file_id).text.splitlines()]
    answers = {
        r["custom_id"]: r["response"]["body"]["choices"][0]["message"]["content"] for r in results
    }
    assert answers == {"q0": "4", "q1": "6"}
    assert all(r["response"]["status_code"] == 200 and r["error"] is None for r in results)
    assert all(r["id"] == f"batch_req_{r['response']['request_id']}" for r in results)
