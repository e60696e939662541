"""The real ``openai`` SDK, unchanged (its own httpx transport, ``base_url`` and ``api_key``),
against the real service: the API on a real socket, a real Celery worker process, real
Redis and the embedded engine with SmolLM2-135M. The model is tiny: these tests check
structure and validity (schema-valid objects, valid tool arguments, the stream's shape,
errors), never what the model knows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import openai
import pytest
from openai import pydantic_function_tool
from pydantic import BaseModel, Field

import sgflow
from sgflow.grammars.validation import validation_errors
from tests.service.stack import Stack

pytestmark = pytest.mark.engine

TRIAGE = Path(sgflow.__file__).parent / "programs" / "library" / "ticket-triage.yaml"
SAY_HI = [{"role": "user", "content": "Say hello."}]
# The grammar allows whitespace runs of up to 4 between JSON tokens and the tiny model takes
# them (greedy or not): enough tokens for the longest object the schemas below allow.
MAX_JSON = 200
LONG = "Write a long, detailed essay about the history of the Roman Empire, with many sections."


class Verdict(BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    score: int = Field(ge=0, le=10)
    urgent: bool


class GetWeather(BaseModel):
    city: Literal["Paris", "Rome", "Tokyo"]
    days: int = Field(ge=1, le=7)


def sdk_for(stack: Stack, key: str) -> openai.OpenAI:
    """The SDK as a user builds it: the base URL and the key (no retries, so a failure
    shows; strict response validation, so an answer the SDK's types reject fails)."""
    return openai.OpenAI(
        base_url=f"{stack.url}/v1",
        api_key=key,
        max_retries=0,
        timeout=300,
        _strict_response_validation=True,
    )


@pytest.fixture(scope="module")
def sdk(stack: Stack) -> Iterator[openai.OpenAI]:
    with sdk_for(stack, stack.acme_key) as client:
        yield client


@pytest.fixture(scope="module")
def model(sdk: openai.OpenAI) -> str:
    """The engine's model, as GET /v1/models lists it."""
    engines = [m.id for m in sdk.models.list() if m.owned_by == "sgflow"]
    assert engines, "the engine's model is listed"
    return engines[0]


def run_of(stack: Stack, run_id: str) -> dict[str, object]:
    r = stack.acme.get(f"/v1/runs/{run_id}")
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


# -- chat completions ---------------------------------------------------------------------------


def test_create_answers_text_as_a_run_that_can_be_followed(
    sdk: openai.OpenAI, stack: Stack, model: str
) -> None:
    completion = sdk.chat.completions.create(model=model, messages=SAY_HI, max_tokens=8)
    choice = completion.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length") and choice.message.role == "assistant"
    usage = completion.usage
    assert usage is not None and 0 < usage.completion_tokens <= 8 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    run_id = completion.run_id  # type: ignore[attr-defined]
    assert completion._request_id == run_id and completion.id == f"chatcmpl-{run_id}"
    assert run_of(stack, run_id)["status"] == "succeeded"


def test_parse_gives_a_schema_valid_object(sdk: openai.OpenAI, model: str) -> None:
    completion = sdk.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Rate this review: 'Great product, fast!'"}],
        response_format=Verdict,
        max_tokens=MAX_JSON,
        temperature=0,
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(message.parsed, Verdict)
    assert Verdict.model_validate_json(message.content or "") == message.parsed


def test_stream_with_include_usage_ends_with_the_usage_chunk(
    sdk: openai.OpenAI, model: str
) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model=model,
            messages=SAY_HI,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert 0 < last.usage.completion_tokens <= 8
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


def test_a_cut_off_structured_answer_is_a_length_finish_not_json(
    sdk: openai.OpenAI, stack: Stack, model: str
) -> None:
    with pytest.raises(openai.LengthFinishReasonError) as info:
        sdk.chat.completions.parse(
            model=model, messages=SAY_HI, response_format=Verdict, max_tokens=3
        )
    completion = info.value.completion
    assert completion.choices[0].finish_reason == "length"
    run = run_of(stack, completion.run_id)  # type: ignore[attr-defined]
    assert run["status"] == "failed"
    assert isinstance(run["error"], dict) and run["error"]["code"] == "output.truncated"
    # the cut-off tokens were generated: they are counted, in the answer and in the run
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens >= 3
    assert run["usage"]["completion_tokens"] == usage.completion_tokens
    failed = run["trace"][-1]
    assert failed["status"] == "failed" and failed["finish_reason"]["type"] == "length"


def test_a_stream_arrives_while_its_run_generates_and_closing_it_cancels_the_run(
    sdk: openai.OpenAI, stack: Stack, model: str
) -> None:
    stream = sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": LONG}], max_tokens=1500, stream=True
    )
    run_id = ""
    for chunk in stream:
        run_id = chunk.id.removeprefix("chatcmpl-")
        if chunk.choices and chunk.choices[0].delta.content:
            break
    assert run_of(stack, run_id)["status"] == "running", "text comes as it is generated"
    stream.close()
    deadline = time.monotonic() + 120
    while (status := run_of(stack, run_id)["status"]) == "running":
        assert time.monotonic() < deadline, "closing the stream cancels the run"
        time.sleep(0.2)
    assert status == "cancelled"


def test_stream_helper_gives_the_parsed_object(sdk: openai.OpenAI, model: str) -> None:
    with sdk.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": "Rate: 'It broke on day one.'"}],
        response_format=Verdict,
        max_tokens=MAX_JSON,
        temperature=0,
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "content.delta" in kinds and "content.done" in kinds
    assert isinstance(final.choices[0].message.parsed, Verdict)


def test_a_strict_tool_call_has_valid_arguments(sdk: openai.OpenAI, model: str) -> None:
    completion = sdk.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "What is the weather in Rome for 3 days?"}],
        tools=[pydantic_function_tool(GetWeather, name="get_weather")],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=MAX_JSON,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert GetWeather.model_validate_json(call.function.arguments)


# -- responses ----------------------------------------------------------------------------------


def test_responses_parse_gives_a_schema_valid_object(
    sdk: openai.OpenAI, stack: Stack, model: str
) -> None:
    response = sdk.responses.parse(
        model=model,
        instructions="You rate reviews.",
        input="Rate this review: 'Okay, nothing special.'",
        text_format=Verdict,
        max_output_tokens=MAX_JSON,
        temperature=0,
    )
    assert response.status == "completed"
    assert isinstance(response.output_parsed, Verdict)
    run_id = response.run_id  # type: ignore[attr-defined]
    assert response.id == f"resp_{run_id}" and run_of(stack, run_id)["status"] == "succeeded"


def test_responses_stream_ends_with_the_whole_response(sdk: openai.OpenAI, model: str) -> None:
    with sdk.responses.stream(model=model, input="Say hello.", max_output_tokens=16) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    last = events[-1]
    assert last.type in ("response.completed", "response.incomplete")  # cut off at 16 tokens
    assert last.response.status == last.type.removeprefix("response.")
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and last.response.output_text == deltas


# -- programs as models -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triage(stack: Stack) -> dict[str, object]:
    """The library's ticket-triage program, stored for tenant acme."""
    source = TRIAGE.read_text(encoding="utf-8")
    r = stack.acme.post("/v1/programs", json={"source": source})
    assert r.status_code in (200, 201), r.text
    body: dict[str, object] = r.json()
    return body


def test_models_list_the_engine_model_and_stored_programs(
    sdk: openai.OpenAI, model: str, triage: dict[str, object]
) -> None:
    ids = {m.id: m.owned_by for m in sdk.models.list()}
    assert ids[model] == "sgflow" and ids["program:ticket-triage@1"] == "acme"
    assert sdk.models.retrieve("program:ticket-triage@1").id == "program:ticket-triage@1"
    with pytest.raises(openai.NotFoundError) as info:
        sdk.models.retrieve("program:no-such-program@1")
    assert info.value.code == "model_not_found"


def test_a_program_model_answers_the_programs_output(
    sdk: openai.OpenAI, stack: Stack, triage: dict[str, object]
) -> None:
    completion = sdk.chat.completions.create(
        model="program:ticket-triage@1",
        messages=[{"role": "user", "content": "I was charged twice for my subscription."}],
    )
    output = json.loads(completion.choices[0].message.content or "")
    schema = {
        "type": "object",
        "required": ["category", "urgency", "team", "reply"],
        "properties": {
            "category": {"enum": ["billing", "bug", "account", "feature_request", "other"]},
            "urgency": {"enum": ["low", "medium", "high"]},
            "team": {"enum": ["payments", "engineering", "identity", "product", "support"]},
            "reply": {"type": "object", "required": ["subject", "body", "needs_human"]},
        },
    }
    assert validation_errors(output, schema) == []
    run = run_of(stack, completion.run_id)  # type: ignore[attr-defined]
    assert run["program"] == "ticket-triage@1" and run["output"] == output


def test_a_program_models_inputs_are_checked_before_any_run(
    sdk: openai.OpenAI, triage: dict[str, object]
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model="program:ticket-triage@1",
            messages=[{"role": "user", "content": '{"customer": "Dana"}'}],
        )
    err = info.value
    assert (err.code, err.param) == ("input.invalid", "messages[0].content")
    assert "ticket" in err.message


def test_another_tenant_cannot_call_acmes_program(stack: Stack, triage: dict[str, object]) -> None:
    with sdk_for(stack, stack.globex_key) as globex, pytest.raises(openai.NotFoundError) as info:
        globex.chat.completions.create(
            model="program:ticket-triage@1", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.code == "model_not_found" and info.value.param == "model"


# -- errors -------------------------------------------------------------------------------------


def test_a_schema_outside_the_strict_subset_is_a_bad_request_naming_the_keyword(
    sdk: openai.OpenAI, model: str
) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "allOf": [{"minLength": 1}]}},
        "required": ["a"],
        "additionalProperties": False,
    }
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model=model,
            messages=SAY_HI,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "a", "strict": True, "schema": schema},
            },
        )
    err = info.value
    assert (err.status_code, err.code, err.param) == (400, "invalid_json_schema", "response_format")
    assert "allOf" in err.message
    assert err.response.headers["x-should-retry"] == "false"


def test_an_unknown_parameter_is_a_bad_request_naming_it(sdk: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model=model, messages=SAY_HI, extra_body={"max_token": 5})
    assert info.value.param == "max_token" and info.value.type == "invalid_request_error"


def test_a_bad_key_is_an_authentication_error(stack: Stack, model: str) -> None:
    with sdk_for(stack, "sgf_not-a-key") as bad, pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model=model, messages=SAY_HI, max_tokens=4)
    assert info.value.code == "invalid_api_key"
    assert isinstance(info.value.body, dict) and info.value.body["sgflow_code"] == "auth.invalid"
    with sdk_for(stack, "sgf_not-a-key") as bad, pytest.raises(openai.AuthenticationError):
        bad.models.list()


@pytest.mark.parametrize(
    ("headers", "content", "status", "code", "sgflow_code"),
    [
        ({}, b'{"model": "m", "messages": []}', 401, "missing_api_key", "auth.missing"),
        (None, b'{"model": "m", "messages": [', 400, "invalid_json", "request.malformed_json"),
        (None, b'{"model": "m", "n": 1e999}', 400, "json.non_finite", "json.non_finite"),
        (None, b'{"model": "m"}', 400, "request.invalid", "request.invalid"),
    ],
)
def test_refusals_before_any_route_are_in_openais_shape(
    stack: Stack,
    headers: dict[str, str] | None,
    content: bytes,
    status: int,
    code: str,
    sgflow_code: str,
) -> None:
    """The key (a dependency) and the body (the middleware) are refused in OpenAI's shape
    on the OpenAI paths, and in sgflow's own on the others."""
    auth = {"Authorization": f"Bearer {stack.acme_key}"} if headers is None else headers
    r = httpx.post(f"{stack.url}/v1/chat/completions", content=content, headers=auth)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["code"], error["sgflow_code"]) == (code, sgflow_code)
    assert error["type"] in ("invalid_request_error", "authentication_error")
    assert "message" in error and "param" in error
    own = httpx.post(f"{stack.url}/v1/runs", content=content, headers=auth)
    assert own.json()["error"]["code"] == sgflow_code and "type" not in own.json()["error"]
