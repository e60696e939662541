"""Request validation: every refusal names its field, SGLang's and the router's fields pass."""

from __future__ import annotations

from typing import Any

import pytest

from sgflow.engine.errors import BadRequest
from sgflow.engine.protocol import MAX_BATCH, expand, parse_generate

ROUTER_BODY = {
    "text": "hi",
    "model": None,
    "return_text_in_logprobs": False,
    "stream": False,
    "log_metrics": True,
    "return_hidden_states": False,
    "background": False,
    "no_logs": False,
    "return_bytes": False,
    "return_entropy": False,
    "sampling_params": {"max_new_tokens": 4, "skip_special_tokens": True, "no_stop_trim": False},
}


def test_body_as_sglang_router_forwards_it_is_accepted() -> None:
    specs, is_list = expand(parse_generate(ROUTER_BODY))
    assert len(specs) == 1 and not is_list


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"text": "a", "foo": 1}, "/foo", "unknown field"),
        (
            {"text": "a", "sampling_params": {"max_new_tokenz": 1}},
            "/sampling_params/max_new_tokenz",
            "unknown field",
        ),
        (
            {"text": "a", "sampling_params": {"max_new_tokens": -1}},
            "/sampling_params/max_new_tokens",
            "greater than or equal",
        ),
        (
            {"text": "a", "sampling_params": {"temperature": "hot"}},
            "/sampling_params/temperature",
            "valid number",
        ),
        (
            {"text": "a", "sampling_params": {"top_p": 0}},
            "/sampling_params/top_p",
            "greater than 0",
        ),
        ({"text": "a", "sampling_params": {"top_k": 0}}, "/sampling_params/top_k", "top_k"),
        ({"text": "a", "sampling_params": {"n": 99}}, "/sampling_params/n", "less than or equal"),
        (
            {"text": "a", "sampling_params": {"stop": [""]}},
            "/sampling_params/stop",
            "must not be empty",
        ),
        ({"text": "a", "image_data": "x.png"}, "/image_data", "not supported"),
        ({"text": "a", "return_hidden_states": True}, "/return_hidden_states", "not supported"),
        ({"text": 5}, "/text", "valid string"),
        ({"text": "a", "stream": "yes"}, "/stream", "valid boolean"),
    ],
)
def test_invalid_fields_are_named(body: dict[str, Any], field: str, needle: str) -> None:
    with pytest.raises(BadRequest, match=needle) as err:
        parse_generate(body)
    assert err.value.field == field
    assert err.value.status == 422


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({}, "/text", "exactly one of text or input_ids"),
        ({"text": "a", "input_ids": [1]}, "/text", "exactly one"),
        ({"text": []}, "/text", "must not be empty"),
        ({"text": ["a"] * (MAX_BATCH + 1)}, "/text", f"at most {MAX_BATCH}"),
        ({"text": ["a", "b"], "sampling_params": [{}]}, "/sampling_params", "2 prompts"),
        ({"text": "a", "top_logprobs_num": 500}, "/top_logprobs_num", "between 0 and"),
    ],
)
def test_request_shape_errors(body: dict[str, Any], field: str, needle: str) -> None:
    with pytest.raises(BadRequest, match=needle) as err:
        expand(parse_generate(body))
    assert err.value.field == field


def test_two_constraints_conflict() -> None:
    req = parse_generate({"text": "a", "sampling_params": {"regex": "a", "ebnf": 'root ::= "a"'}})
    specs, _ = expand(req)
    with pytest.raises(BadRequest, match="only one constraint") as err:
        specs[0].params.constraint()
    assert err.value.code == "grammar.conflict"


def test_list_input_and_n_expand_in_order() -> None:
    specs, is_list = expand(
        parse_generate({"text": ["a", "b"], "rid": ["r1", "r2"], "sampling_params": {"n": 2}})
    )
    assert is_list
    assert [(s.prompt_index, s.rid) for s in specs] == [
        (0, "r1-0"),
        (0, "r1-1"),
        (1, "r2-0"),
        (1, "r2-1"),
    ]


def test_input_ids_single_and_batch() -> None:
    assert not expand(parse_generate({"input_ids": [1, 2, 3]}))[1]
    specs, is_list = expand(parse_generate({"input_ids": [[1], [2, 3]]}))
    assert is_list and [s.input_ids for s in specs] == [[1], [2, 3]]


def test_json_schema_as_object_is_serialised() -> None:
    specs, _ = expand(
        parse_generate({"text": "a", "sampling_params": {"json_schema": {"type": "integer"}}})
    )
    constraint = specs[0].params.constraint()
    assert constraint is not None and constraint.kind == "json_schema"
    assert constraint.source == '{"type": "integer"}'
