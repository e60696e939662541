"""OpenAI batch files: the input line checker (every broken line named), result lines, and
the File and Batch objects as the SDK's types read them."""

from __future__ import annotations

import json
from typing import Any

import openai.types
import pytest

from sgflow.errors import SgflowError
from sgflow.openai import (
    BATCH_STATUS,
    BatchLimits,
    batch_error_line,
    batch_object,
    batch_output_line,
    file_object,
    parse_batch_file,
    parse_chat_request,
    parse_responses_request,
)
from sgflow.service.batches import BATCH_STATUSES, batch_view
from sgflow.store import BatchProgress, BatchRecord

CHAT = "/v1/chat/completions"


def line(custom_id: str = "a", **over: Any) -> str:
    item = {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        **over,
    }
    return json.dumps(item)


def parse(text: str, **kw: Any) -> Any:
    return parse_batch_file(
        text.encode(), endpoint=kw.pop("endpoint", CHAT), parse_body=parse_chat_request, **kw
    )


def test_a_good_file_gives_every_request_with_its_line() -> None:
    requests = parse(line("a") + "\n\n" + line("b") + "\n")
    assert [(r.line, r.custom_id) for r in requests] == [(1, "a"), (3, "b")]
    assert requests[0].body.messages[0].content == "hi"


@pytest.mark.parametrize(
    ("text", "code", "param"),
    [
        ("{not json", "invalid_json_line", None),
        ("[1, 2]", "invalid_json_line", None),
        (line(custom_id=""), "missing_custom_id", "custom_id"),
        (json.dumps({"method": "POST", "url": CHAT, "body": {}}), "missing_custom_id", "custom_id"),
        (line(method="GET"), "invalid_method", "method"),
        (line(url="/v1/embeddings"), "invalid_url", "url"),
        (line(url="/v1/responses"), "mismatched_endpoint", "url"),
        (line(body=[1]), "invalid_body", "body"),
        (
            line(
                body={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
            ),
            "stream_not_supported",
            "body.stream",
        ),
        (line(extra=1), "invalid_request", "extra"),
        (line(body={"model": "m", "messages": []}), "invalid_body", "body.messages"),
        (
            line(body={"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}),
            "invalid_body",
            "body.n",
        ),
    ],
)
def test_each_way_a_line_can_be_broken_is_named_with_its_line(
    text: str, code: str, param: str | None
) -> None:
    with pytest.raises(SgflowError) as info:
        parse(line("ok") + "\n" + text)
    err = info.value
    assert err.code == "batch.invalid_line" and err.status == 422 and err.field == "/lines/2"
    (problem,) = err.extra["errors"]
    assert (problem["line"], problem["code"], problem["param"]) == (2, code, param)
    assert problem["message"].startswith("line 2: ")


def test_every_broken_line_is_reported_not_only_the_first() -> None:
    with pytest.raises(SgflowError) as info:
        parse("\n".join([line("a"), line("a"), "x", line("b", method="PUT")]))
    assert [(e["line"], e["code"]) for e in info.value.extra["errors"]] == [
        (2, "duplicate_custom_id"),
        (3, "invalid_json_line"),
        (4, "invalid_method"),
    ]
    assert "already used on line 1" in info.value.extra["errors"][0]["message"]
    assert info.value.message.endswith("(and 2 more)")


def test_a_file_that_is_not_utf8_names_the_line() -> None:
    with pytest.raises(SgflowError) as info:
        parse_batch_file(
            line("a").encode() + b"\n\xff\xfe", endpoint=CHAT, parse_body=parse_chat_request
        )
    assert info.value.field == "/lines/2"


def test_limits_are_openais_and_configurable() -> None:
    assert BatchLimits() == BatchLimits(max_requests=50_000, max_bytes=200 * 1024 * 1024)
    with pytest.raises(SgflowError) as many:
        parse("\n".join(line(str(i)) for i in range(4)), limits=BatchLimits(max_requests=3))
    assert (many.value.code, many.value.status, many.value.limit) == ("limit.batch_size", 413, 3)
    with pytest.raises(SgflowError) as big:
        parse(line("a"), limits=BatchLimits(max_bytes=10))
    assert (big.value.code, big.value.status, big.value.limit) == ("limit.file_size", 413, 10)


def test_an_empty_file_and_an_unsupported_endpoint_are_refused() -> None:
    with pytest.raises(SgflowError, match="no requests"):
        parse("\n\n")
    with pytest.raises(SgflowError) as info:
        parse(line("a"), endpoint="/v1/embeddings")
    assert (info.value.code, info.value.field) == ("openai.unsupported", "/endpoint")


def test_responses_lines() -> None:
    text = json.dumps(
        {
            "custom_id": "r",
            "method": "POST",
            "url": "/v1/responses",
            "body": {"model": "m", "input": "x"},
        }
    )
    (request,) = parse_batch_file(
        text.encode(), endpoint="/v1/responses", parse_body=parse_responses_request
    )
    assert request.body.input == "x"


def test_result_lines() -> None:
    out = batch_output_line("a", "run1", status_code=200, body={"id": "chatcmpl-run1"})
    assert out == {
        "id": "batch_req_run1",
        "custom_id": "a",
        "response": {"status_code": 200, "request_id": "run1", "body": {"id": "chatcmpl-run1"}},
        "error": None,
    }
    never = batch_error_line("b", "run2", code="batch_expired", message="not run in time")
    assert never["response"] is None and never["error"] == {
        "code": "batch_expired",
        "message": "not run in time",
    }


def test_the_file_object_is_the_sdks() -> None:
    body = file_object(
        "file-1", size=12, created_at=1.5, filename="in.jsonl", purpose="batch", expires_at=99.0
    )
    parsed = openai.types.FileObject.model_validate(body, strict=False)
    assert (parsed.id, parsed.bytes, parsed.status, parsed.expires_at) == (
        "file-1",
        12,
        "processed",
        99,
    )


def test_every_sgflow_batch_status_has_an_openai_one() -> None:
    assert set(BATCH_STATUS) == set(BATCH_STATUSES)
    assert set(BATCH_STATUS.values()) <= {
        "validating",
        "failed",
        "in_progress",
        "finalizing",
        "completed",
        "expired",
        "cancelling",
        "cancelled",
    }


@pytest.mark.parametrize(
    ("done", "cancelled", "status"),
    [(0, False, "in_progress"), (2, False, "finalizing"), (1, True, "cancelling")],
)
def test_the_batch_object_comes_from_sgflows_batch_view(
    done: int, cancelled: bool, status: str
) -> None:
    record = BatchRecord(
        id="b1",
        tenant="t",
        program="inline",
        program_hash="h",
        status="in_progress",
        total=2,
        cancelled=cancelled,
        error=None,
        created_at=100.0,
        in_progress_at=101.0,
        deadline_at=200.0,
        cancelling_at=102.0 if cancelled else None,
        expired_at=None,
        finalized_at=None,
        completed_at=None,
        failed_at=None,
        cancelled_at=None,
    )
    view = batch_view(record, BatchProgress(completed=done, failed=0))
    body = batch_object(view, endpoint=CHAT, input_file_id="file-1", metadata={"k": "v"})
    batch = openai.types.Batch.model_validate(body)
    assert (batch.status, batch.request_counts and batch.request_counts.completed) == (status, done)
    assert (batch.created_at, batch.expires_at, batch.input_file_id) == (100, 200, "file-1")


def test_an_unknown_status_is_a_bug_not_a_silent_mapping() -> None:
    with pytest.raises(ValueError, match="has no OpenAI status"):
        batch_object(
            {"id": "b", "status": "paused", "created_at": 1}, endpoint=CHAT, input_file_id="f"
        )
