"""Translation: chat completion and Responses requests become inline sgflow programs.

Each case is planned and its program is checked by the real static checker; the cases that
say what the model sees also run on the fake engine (tests/openai/fake_engine.py) and look
at the prompt it received."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sgflow.errors import SgflowError
from sgflow.openai import (
    Plan,
    PlanOptions,
    parse_chat_request,
    parse_responses_request,
    plan_chat,
    plan_program_model,
    plan_responses,
)
from sgflow.openai.model_list import ProgramModel, parse_model_name
from sgflow.openai.plan import ANSWER_STEP, CALLS_STEP, DECIDE_STEP, FORK_STEP
from sgflow.programs.checker import check_program
from tests.openai.fake_engine import FakeEngine, run_plan

USER = [{"role": "user", "content": "hi"}]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
SEARCH = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}


def chat(**body: Any) -> Plan:
    plan = plan_chat(parse_chat_request({"model": "smollm2", "messages": USER, **body}))
    assert isinstance(plan.program, dict)
    assert check_program(plan.program) == [], "the translation made an invalid program"
    return plan


def refused(
    body: dict[str, Any], parse: Any = parse_chat_request, planner: Any = plan_chat
) -> SgflowError:
    with pytest.raises(SgflowError) as info:
        planner(parse(body))
    return info.value


def steps(plan: Plan) -> list[dict[str, Any]]:
    assert isinstance(plan.program, dict)
    body = plan.program["steps"]
    return body[0]["fork"]["steps"] if body[0]["id"] == FORK_STEP else body


def prompt_of(plan: Plan, reply: str = "ok") -> str:
    engine = FakeEngine(reply=lambda prompt, params: reply)
    run_plan(plan, engine)
    return engine.calls[0].prompt


# -- messages ------------------------------------------------------------------------------------


def test_each_message_kind_becomes_a_turn_of_the_conversation() -> None:
    plan = chat(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather"},
                    {"type": "text", "text": "in Paris?"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
            {"role": "system", "content": "Answer in French."},
            {"role": "assistant", "content": "Il fait 21 degrés."},
            {"role": "user", "content": "Thanks"},
        ],
        tools=[WEATHER],
        tool_choice="none",
    )
    assert plan.inputs["system"].startswith("Be brief.\n\nUse metric units.\n\n# Functions")
    assert [c["role"] for c in plan.program["context"]] == [  # type: ignore[index]
        "user",
        "assistant",
        "user",
        "system",
        "assistant",
        "user",
    ]
    assert plan.inputs["turns"] == [
        "Weather\nin Paris?",
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        "Result of `get_weather` (call c1):\n21 C",
        "Answer in French.",
        "Il fait 21 degrés.",
        "Thanks",
    ]
    assert plan.mode == "text" and [s["id"] for s in steps(plan)] == [ANSWER_STEP]


def test_messages_are_inputs_never_template_source() -> None:
    attack = "{{ 7*7 }} {% for x in range(3) %}{{ x }}{% endfor %} {{ inputs }} {# c #}"
    plan = chat(
        messages=[{"role": "system", "content": attack}, {"role": "user", "content": attack}]
    )
    source = json.dumps(plan.program)
    assert "7*7" not in source and "range(3)" not in source
    prompt = prompt_of(plan)
    assert prompt.count(attack) == 2, prompt
    assert "49" not in prompt and "012" not in prompt


def test_keys_the_sdk_sends_back_inside_messages_and_tools_are_ignored() -> None:
    plan = chat(
        messages=[
            {"role": "user", "content": "x", "name": "ann"},
            {
                "role": "assistant",
                "content": '{"a": 1}',
                "parsed": {"a": 1},
                "refusal": None,
                "annotations": [],
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "search", "arguments": "{}", "parsed_arguments": {}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "none", "name": "search"},
        ],
        tools=[
            {**SEARCH, "strict": False, "function": {**SEARCH["function"], "description": None}}
        ],
    )
    assert plan.inputs["turns"][1] == '{"a": 1}\n{"name": "search", "arguments": {}}'


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"max_token": 5}, "request.invalid", "/max_token"),
        ({"logprobs": True}, "openai.unsupported", "/logprobs"),
        ({"logit_bias": {"1": 5}}, "openai.unsupported", "/logit_bias"),
        ({"frequency_penalty": 0.5}, "openai.unsupported", "/frequency_penalty"),
        ({"modalities": ["text", "audio"]}, "openai.unsupported", "/modalities"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ]
            },
            "openai.unsupported",
            "/messages/0/content/0",
        ),
        (
            {"messages": [{"role": "function", "name": "f", "content": "x"}]},
            "openai.unsupported",
            "/messages/0/role",
        ),
        ({"messages": [{"role": "robot", "content": "x"}]}, "request.invalid", "/messages/0"),
        ({"messages": []}, "request.invalid", "/messages"),
        (
            {"tools": [{"type": "custom", "custom": {"name": "x"}}]},
            "openai.unsupported",
            "/tools/0/type",
        ),
        ({"tools": [WEATHER, WEATHER]}, "request.invalid", "/tools/1/function"),
        (
            {"tools": [{"type": "function", "function": {"name": "a b"}}]},
            "request.invalid",
            "/tools/0/function/name",
        ),
        ({"tool_choice": "required"}, "request.invalid", "/tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "request.invalid",
            "/tool_choice/function/name",
        ),
        ({"stop": ["a", "b", "c", "d", "e"]}, "request.invalid", "/stop"),
        ({"stop": [""]}, "request.invalid", "/stop"),
        ({"max_tokens": 5000}, "limit.max_tokens", "/max_tokens"),
        ({"max_completion_tokens": 9000}, "limit.max_tokens", "/max_completion_tokens"),
        ({"max_tokens": 5, "max_completion_tokens": 6}, "request.invalid", "/max_tokens"),
        ({"n": 33}, "limit.fork_width", "/n"),
        ({"n": 16, "max_tokens": 4096}, "limit.total_tokens", "/n"),
        ({"temperature": 3}, "request.invalid", "/temperature"),
        (
            {"messages": [{"role": "user", "content": "x" * 200_001}]},
            "limit.message_size",
            "/messages/0",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "p",
                        "schema": {
                            "type": "object",
                            "properties": {"a": {"type": "string", "pattern": "(a"}},
                        },
                    },
                }
            },
            "grammar.invalid_regex",
            "/response_format/json_schema/schema/properties/a/pattern",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "p",
                        "strict": True,
                        "schema": {"type": "object", "properties": {}},
                    },
                }
            },
            "openai.invalid_json_schema",
            "/response_format/json_schema/schema",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "strict": True,
                            "parameters": {
                                "type": "object",
                                "properties": {"a": {"type": "string"}},
                            },
                        },
                    }
                ]
            },
            "openai.invalid_json_schema",
            "/tools/0/function/parameters",
        ),
    ],
)
def test_what_cannot_be_honoured_is_refused_naming_the_field(
    body: dict[str, Any], code: str, field: str
) -> None:
    err = refused({"model": "m", "messages": USER, **body})
    assert (err.code, err.field) == (code, field), err.to_dict()
    assert err.status in (400, 404, 413, 422)


def test_neutral_values_of_unsupported_parameters_are_accepted() -> None:
    chat(
        logprobs=False,
        frequency_penalty=0,
        presence_penalty=0.0,
        logit_bias={},
        modalities=["text"],
        seed=7,
        user="u",
        metadata={"k": "v"},
        store=True,
        service_tier="auto",
    )


# -- the answer's constraint -----------------------------------------------------------------------


def test_text_is_free_generation_with_the_sampling_parameters() -> None:
    plan = chat(temperature=0.3, top_p=0.9, max_tokens=50, stop="END")
    gen = steps(plan)[0]["gen"]
    assert gen == {"max_tokens": 50, "temperature": 0.3, "top_p": 0.9, "stop": ["END"]}
    assert plan.live and plan.max_tokens == 50


def test_defaults_are_openais_temperature_and_a_bounded_max_tokens() -> None:
    gen = steps(chat())[0]["gen"]
    assert gen["temperature"] == 1.0 and gen["max_tokens"] == PlanOptions().default_max_tokens
    assert (
        steps(
            plan_chat(
                parse_chat_request({"model": "m", "messages": USER}),
                PlanOptions(default_temperature=0),
            )
        )[0]["gen"]["temperature"]
        == 0
    )


def test_top_p_zero_means_greedy() -> None:
    gen = steps(chat(top_p=0))[0]["gen"]
    assert (gen["temperature"], gen["top_p"]) == (0.0, 1.0)


def test_json_object_is_any_object() -> None:
    plan = chat(response_format={"type": "json_object"}, stop=["x"])
    gen = steps(plan)[0]["gen"]
    assert gen["json_schema_from"] == "inputs.answer_schema" and "stop" not in gen
    assert plan.inputs["answer_schema"] == {"type": "object"} and plan.mode == "json"


def test_a_strict_json_schema_is_read_as_openai_reads_it() -> None:
    schema = {
        "type": "object",
        "properties": {"c": {"type": ["string", "null"], "enum": ["a", "b"]}},
        "required": ["c"],
        "additionalProperties": False,
    }
    plan = chat(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "strict": True, "schema": schema},
        }
    )
    assert plan.inputs["answer_schema"]["properties"]["c"]["enum"] == ["a", "b", None]
    assert plan.live and plan.validated == ()


def test_a_non_strict_schema_may_use_what_sgflow_enforces_and_says_what_is_checked_after() -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}},
    }
    plan = chat(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    )
    assert plan.inputs["answer_schema"] == schema
    assert [(v.param, v.pointer, v.keyword) for v in plan.validated] == [
        ("response_format", "/properties/tags", "uniqueItems")
    ]
    assert not plan.live, "an answer that may be repaired is not streamed as it is generated"
    assert plan.program["policy"]["max_attempts"] == 3  # type: ignore[index]


def test_a_streamed_live_plan_is_not_retried_so_a_cut_off_ends_the_choice() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
    plan = chat(response_format=fmt, stream=True)
    assert plan.live and plan.program["policy"]["max_attempts"] == 1  # type: ignore[index]
    # not streamed, nobody has seen the cut-off text: it is generated again first
    unstreamed = chat(response_format=fmt)
    assert unstreamed.live and unstreamed.program["policy"]["max_attempts"] == 3  # type: ignore[index]


# -- tools --------------------------------------------------------------------------------------


def test_tool_choice_none_describes_the_tools_and_answers_in_words() -> None:
    plan = chat(tools=[WEATHER], tool_choice="none")
    assert plan.mode == "text" and "calls_schema" not in plan.inputs
    assert '"name": "get_weather"' in plan.inputs["system"]
    assert plan.inputs["system"].endswith("Do not call them now: answer in words.")
    assert "`call`" in chat(tools=[WEATHER]).inputs["system"], "auto explains the choice"


def test_tool_choice_auto_chooses_between_answering_and_calling() -> None:
    plan = chat(tools=[WEATHER, SEARCH])
    decide, answer, calls = steps(plan)
    assert decide == {"id": DECIDE_STEP, "select": ["answer", "call"]}
    assert answer["if"] == "steps.decide == 'answer'" and calls["if"] == "steps.decide == 'call'"
    assert plan.mode == "auto" and plan.parallel and plan.tools == ("get_weather", "search")
    schema = plan.inputs["calls_schema"]
    assert schema["type"] == "array" and schema["minItems"] == 1
    assert [v["properties"]["name"] for v in schema["items"]["anyOf"]] == [
        {"const": "get_weather"},
        {"const": "search"},
    ]


def test_tool_choice_required_without_parallel_calls_is_one_call() -> None:
    plan = chat(tools=[WEATHER, SEARCH], tool_choice="required", parallel_tool_calls=False)
    assert [s["id"] for s in steps(plan)] == [CALLS_STEP] and plan.mode == "calls"
    assert "anyOf" in plan.inputs["calls_schema"] and "type" not in plan.inputs["calls_schema"]


def test_a_named_tool_choice_is_exactly_one_call_of_that_function() -> None:
    plan = chat(
        tools=[WEATHER, SEARCH], tool_choice={"type": "function", "function": {"name": "search"}}
    )
    schema = plan.inputs["calls_schema"]
    assert schema["properties"]["name"] == {"const": "search"} and not plan.parallel
    assert schema["properties"]["arguments"] == {"$ref": "#/$defs/f0"}
    assert schema["$defs"]["f0"] == {"type": "object"}


def test_allowed_tools_restrict_the_calls_but_every_tool_stays_described() -> None:
    plan = chat(
        tools=[WEATHER, SEARCH],
        tool_choice={
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "required",
                "tools": [{"type": "function", "function": {"name": "search"}}],
            },
        },
    )
    assert plan.tools == ("search",) and "get_weather" in plan.inputs["system"]


def test_a_tools_own_refs_still_resolve_inside_the_calls_schema() -> None:
    params = {
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/n"}},
        "required": ["node"],
        "$defs": {
            "n": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
            }
        },
    }
    plan = chat(
        tools=[{"type": "function", "function": {"name": "t", "parameters": params}}],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    schema = plan.inputs["calls_schema"]
    moved = schema["$defs"]["f0"]
    assert moved["properties"]["node"] == {"$ref": "#/$defs/f0/$defs/n"}
    assert moved["$defs"]["n"]["properties"]["kids"]["items"] == {"$ref": "#/$defs/f0/$defs/n"}


def test_a_tool_without_parameters_takes_an_empty_object() -> None:
    plan = chat(tools=[{"type": "function", "function": {"name": "now"}}], tool_choice="required")
    assert plan.inputs["calls_schema"]["$defs"]["f0"]["properties"] == {}


def test_the_cookbooks_tool_level_strict_counts() -> None:
    lax = {
        "type": "function",
        "strict": True,
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    }
    assert (
        refused({"model": "m", "messages": USER, "tools": [lax]}).code
        == "openai.invalid_json_schema"
    )


# -- n and the prefix ---------------------------------------------------------------------------


def test_n_is_one_fork_sharing_the_prompt() -> None:
    plan = chat(n=3, tools=[WEATHER])
    fork = plan.program["steps"][0]  # type: ignore[index]
    assert fork["id"] == FORK_STEP and fork["fork"]["n"] == 3
    assert plan.program["output"]["value"] == "{{ steps.choices }}"  # type: ignore[index]
    assert plan.program["policy"]["token_budget"] >= 3 * 2 * plan.max_tokens  # type: ignore[index]


def test_the_shared_part_of_the_prompt_comes_first_and_is_byte_identical() -> None:
    history = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    first = chat(messages=history, tools=[WEATHER], tool_choice="none")
    second = chat(
        messages=[
            *history,
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "And Rome?"},
        ],
        tools=[WEATHER],
        tool_choice="none",
    )
    a, b = prompt_of(first), prompt_of(second)
    shared = a[: a.rindex("<|im_start|>assistant")]
    assert b.startswith(shared) and len(b) > len(a)


# -- programs as models ---------------------------------------------------------------------------

TRIAGE_INPUTS = {
    "type": "object",
    "properties": {"ticket": {"type": "string", "minLength": 1}, "customer": {"type": "string"}},
    "required": ["ticket"],
    "additionalProperties": False,
}


def program_plan(content: str, schema: dict[str, Any] = TRIAGE_INPUTS, **body: Any) -> Plan:
    req = parse_chat_request(
        {
            "model": "program:ticket-triage@1",
            "messages": [{"role": "user", "content": content}],
            **body,
        }
    )
    model = parse_model_name(req.model)
    assert model is not None
    return plan_program_model(req, model, inputs_schema=schema)


def test_a_program_model_takes_the_last_user_message_as_its_string_input() -> None:
    plan = program_plan("The app crashes.")
    assert (plan.program, plan.inputs, plan.mode) == (
        "ticket-triage@1",
        {"ticket": "The app crashes."},
        "program",
    )
    assert plan.run_body() == {
        "program": "ticket-triage@1",
        "inputs": {"ticket": "The app crashes."},
    }


def test_a_program_model_takes_a_json_object_as_its_inputs() -> None:
    assert program_plan('{"ticket": "x", "customer": "Dana"}').inputs == {
        "ticket": "x",
        "customer": "Dana",
    }
    with pytest.raises(SgflowError) as info:
        program_plan('{"ticket": 5}')
    err = info.value
    assert err.code == "input.invalid" and err.field == "/messages/0/content"


def test_a_program_that_needs_several_inputs_names_them() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "required": ["a", "b"],
    }
    with pytest.raises(SgflowError) as info:
        program_plan("plain text", schema)
    err = info.value
    assert err.code == "input.invalid" and "a, b" in err.message and err.status == 422


def test_program_models_refuse_tools_and_several_choices() -> None:
    with pytest.raises(SgflowError) as tools:
        program_plan("x", tools=[WEATHER])
    with pytest.raises(SgflowError) as n:
        program_plan("x", n=2)
    assert (tools.value.field, n.value.field) == ("/tools", "/n")


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("smollm2", None),
        ("program:ticket-triage@1", ProgramModel("ticket-triage", 1)),
        ("program:t", ProgramModel("t", None)),
        ("program:t@latest", ProgramModel("t", None)),
    ],
)
def test_model_names(name: str, parsed: ProgramModel | None) -> None:
    assert parse_model_name(name) == parsed


def test_a_malformed_program_model_name_is_not_found() -> None:
    with pytest.raises(SgflowError) as info:
        parse_model_name("program:Bad Name")
    err = info.value
    assert (err.code, err.status, err.field) == ("model.not_found", 404, "/model")


# -- Responses ---------------------------------------------------------------------------------------


def responses(**body: Any) -> Plan:
    plan = plan_responses(parse_responses_request({"model": "smollm2", **body}))
    assert isinstance(plan.program, dict) and check_program(plan.program) == []
    return plan


def test_responses_input_items_become_turns() -> None:
    plan = responses(
        instructions="Be terse.",
        input=[
            {"role": "user", "content": "Weather?"},
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "get_weather",
                "arguments": '{"city": "Oslo"}',
                "id": "fc_1",
                "status": "completed",
            },
            {
                "type": "function_call",
                "call_id": "c2",
                "name": "get_weather",
                "arguments": '{"city": "Rome"}',
            },
            {"type": "function_call_output", "call_id": "c1", "output": "2 C"},
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "Cold.", "annotations": [], "logprobs": []}
                ],
            },
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "Shorter."}],
            },
        ],
        tools=[
            {
                "type": "function",
                "name": "get_weather",
                "description": None,
                "parameters": WEATHER["function"]["parameters"],
                "strict": True,
            }
        ],
        tool_choice="none",
    )
    assert plan.inputs["system"].startswith("Be terse.\n\n# Functions")
    assert plan.inputs["turns"] == [
        "Weather?",
        '[{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]',
        "Result of `get_weather` (call c1):\n2 C",
        "Cold.",
        "Shorter.",
    ]
    assert plan.echo["tools"][0]["name"] == "get_weather" and plan.endpoint == "responses"


def test_responses_text_format_and_max_output_tokens() -> None:
    plan = responses(
        input="x",
        text={"format": {"type": "json_schema", "name": "p", "schema": PERSON, "strict": True}},
        max_output_tokens=64,
    )
    assert plan.inputs["answer_schema"] == PERSON and plan.max_tokens == 64 and plan.mode == "json"
    assert plan.echo["text"]["format"]["schema"] == PERSON


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (
            {"input": "x", "previous_response_id": "resp_1"},
            "openai.unsupported",
            "/previous_response_id",
        ),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "openai.unsupported", "/input/0/type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "openai.unsupported",
            "/input/0/content/0",
        ),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "openai.unsupported", "/tools/0/type"),
        (
            {
                "input": "x",
                "text": {
                    "format": {
                        "type": "json_schema",
                        "name": "p",
                        "strict": True,
                        "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                    }
                },
            },
            "openai.invalid_json_schema",
            "/text/format/schema",
        ),
        ({"input": "x", "max_output_tokens": 10_000}, "limit.max_tokens", "/max_output_tokens"),
        ({"input": "x", "temprature": 1}, "request.invalid", "/temprature"),
    ],
)
def test_responses_refusals_name_the_field(body: dict[str, Any], code: str, field: str) -> None:
    err = refused({"model": "m", **body}, parse_responses_request, plan_responses)
    assert (err.code, err.field) == (code, field), err.to_dict()


def test_max_tool_calls_bounds_parallel_calls() -> None:
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}
    plan = responses(input="x", tools=[tool], tool_choice="required", max_tool_calls=2)
    assert plan.inputs["calls_schema"]["maxItems"] == 2


# -- what other clients send (exact bodies from the research probes) -----------------------------

USER_MODEL = {
    "properties": {
        "name": {"title": "Name", "type": "string"},
        "age": {"title": "Age", "type": "integer"},
        "nick": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Nick"},
    },
    "required": ["age", "name"],
    "type": "object",
}


def test_instructors_tools_mode_and_its_reask() -> None:
    plan = chat(
        messages=[
            {"role": "user", "content": "Ann is 3"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "User", "arguments": '{"name": "Ann"}'},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "name": "User",
                "content": "Validation error: age is required",
            },
        ],
        tool_choice={"type": "function", "function": {"name": "User"}},
        tools=[
            {
                "type": "function",
                "function": {"name": "User", "description": "A user.", "parameters": USER_MODEL},
            }
        ],
    )
    assert plan.mode == "calls" and not plan.parallel
    assert plan.inputs["calls_schema"]["$defs"]["f0"] == USER_MODEL, (
        "non-strict: the schema as sent"
    )
    assert (
        plan.inputs["turns"][2]
        == "Result of `User` (call call_1):\nValidation error: age is required"
    )


def test_langchains_function_calling_and_json_mode() -> None:
    params = {k: v for k, v in USER_MODEL.items()}
    plan = chat(
        parallel_tool_calls=False,
        tool_choice={"type": "function", "function": {"name": "User"}},
        tools=[
            {
                "type": "function",
                "function": {"name": "User", "description": "A user.", "parameters": params},
            }
        ],
        stream=False,
    )
    assert plan.mode == "calls"
    assert chat(response_format={"type": "json_object"}).mode == "json"


def test_tools_that_pass_alone_but_not_together_name_the_limit() -> None:
    from sgflow.grammars import limits

    wide = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string"} for i in range(40)},
    }  # ~1 kB
    tools = [
        {"type": "function", "function": {"name": f"t{i}", "parameters": wide}} for i in range(3)
    ]
    with limits(max_schema_bytes=2500):
        err = refused({"model": "m", "messages": USER, "tools": tools, "tool_choice": "required"})
    assert err.code == "limit.schema_size" and err.field == "/tools"
