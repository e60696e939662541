"""sgflow's errors in OpenAI's shape: status, type, code, param, headers, and what the SDK
raises for them."""

from __future__ import annotations

import httpx2
import openai
import pytest

from sgflow.errors import SgflowError
from sgflow.openai.errors import (
    chat_stream_error,
    error_type,
    openai_error,
    pointer_to_param,
    responses_stream_error,
)
from tests.openai.sdk import client


@pytest.mark.parametrize(
    ("pointer", "param"),
    [
        ("/tools/0/function/parameters", "tools[0].function.parameters"),
        ("/messages/3/content/0", "messages[3].content[0]"),
        ("/response_format", "response_format"),
        ("/a~1b/c~0d", "a/b.c~d"),
        ("/0", "0"),
        ("query:after", "after"),
        ("", None),
        (None, None),
    ],
)
def test_pointers_become_openais_params(pointer: str | None, param: str | None) -> None:
    assert pointer_to_param(pointer) == param


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (409, "invalid_request_error"),
        (413, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "server_error"),
    ],
)
def test_the_type_follows_the_status(status: int, kind: str) -> None:
    assert error_type(status) == kind


def test_a_422_is_answered_400_with_openais_four_keys_and_sgflows_beside_them() -> None:
    err = SgflowError(
        "limit.max_tokens",
        "max_tokens is 9000; the limit is 4096",
        field="/max_tokens",
        limit=4096,
        hint="lower it",
    )
    answer = openai_error(err)
    assert answer.status == 400 and answer.headers == {"x-should-retry": "false"}
    assert answer.body == {
        "error": {
            "message": "max_tokens is 9000; the limit is 4096",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "limit.max_tokens",
            "sgflow_code": "limit.max_tokens",
            "field": "/max_tokens",
            "limit": 4096,
            "hint": "lower it",
            "retryable": False,
        }
    }


def test_openais_code_and_param_when_given_and_extra_keys_kept() -> None:
    err = SgflowError(
        "openai.invalid_json_schema",
        "Invalid schema",
        field="/tools/0/function/parameters/properties/a",
        extra={
            "param": "tools[0].function.parameters",
            "openai_code": "invalid_function_parameters",
            "keyword": "allOf",
        },
    )
    body = openai_error(err).body["error"]
    assert (body["code"], body["param"], body["keyword"]) == (
        "invalid_function_parameters",
        "tools[0].function.parameters",
        "allOf",
    )
    assert "openai_code" not in body


def test_a_retryable_error_keeps_retry_after_and_lets_the_sdk_retry() -> None:
    err = SgflowError("limit.concurrent_runs", "busy", limit=16, headers={"Retry-After": "5"})
    answer = openai_error(err)
    assert answer.status == 429 and answer.headers == {"Retry-After": "5"}
    assert answer.body["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("error", "raised", "code"),
    [
        (SgflowError("auth.invalid", "unknown key"), openai.AuthenticationError, "invalid_api_key"),
        (
            SgflowError("program.not_found", "no program x@1", field="/model"),
            openai.NotFoundError,
            "model_not_found",
        ),
        (
            SgflowError("limit.concurrent_runs", "busy", headers={"Retry-After": "5"}),
            openai.RateLimitError,
            "rate_limit_exceeded",
        ),
        (
            SgflowError("input.invalid", "bad inputs", field="/messages/0/content"),
            openai.BadRequestError,
            "input.invalid",
        ),
        (SgflowError("run.failed", "the run failed"), openai.InternalServerError, "run.failed"),
    ],
    ids=lambda x: getattr(x, "code", None) or getattr(x, "__name__", ""),
)
def test_the_sdk_raises_its_class_for_each_status(
    error: SgflowError, raised: type[openai.APIStatusError], code: str
) -> None:
    answer = openai_error(error)
    calls = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request)
        return httpx2.Response(answer.status, json=answer.body, headers=answer.headers)

    with pytest.raises(raised) as info:
        client(handler).models.list()
    assert info.value.code == code and info.value.message.endswith(error.message)
    assert len(calls) == 1


def test_stream_errors() -> None:
    err = SgflowError("stream.restarted", "restarted", hint="send it again")
    chat = chat_stream_error(err)
    assert chat["error"]["code"] == "stream.restarted" and chat["error"]["type"] == "server_error"
    event = responses_stream_error(err, sequence_number=7)
    assert (event["type"], event["sequence_number"], event["code"], event["retryable"]) == (
        "error",
        7,
        "stream.restarted",
        True,
    )
