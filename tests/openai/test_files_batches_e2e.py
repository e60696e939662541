"""OpenAI Files and Batches through the real ``openai`` SDK, unchanged, against the real
service (API on a socket, a Celery worker process, Redis, the embedded engine): upload a
JSONL file, run it as a batch, download the output file."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import openai
import pytest
import redis
from pydantic import BaseModel, Field

from sgflow.grammars.validation import validation_errors
from sgflow.service.app import create_app
from sgflow.settings import Settings
from sgflow.store import KeyStore
from tests.openai.test_service_e2e import MAX_JSON, sdk_for
from tests.service.conftest import REDIS_URL, ServerThread
from tests.service.stack import Stack

pytestmark = pytest.mark.engine

BATCH_DEADLINE_S = 300.0  # how long a 3-line batch may take on the tiny model (2 cores)


class Verdict(BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    score: int = Field(ge=0, le=10)


VERDICT_SCHEMA = {**Verdict.model_json_schema(), "additionalProperties": False}


@pytest.fixture(scope="module")
def sdk(stack: Stack) -> Iterator[openai.OpenAI]:
    with sdk_for(stack, stack.acme_key) as client:
        yield client


@pytest.fixture(scope="module")
def model(sdk: openai.OpenAI) -> str:
    engines = [m.id for m in sdk.models.list() if m.owned_by == "sgflow"]
    assert engines, "the engine's model is listed"
    return engines[0]


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def chat_line(custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def test_a_file_round_trips_and_another_tenant_cannot_see_it(
    sdk: openai.OpenAI, stack: Stack
) -> None:
    content = jsonl(
        [chat_line("a", {"model": "m", "messages": [{"role": "user", "content": "hé"}]})]
    )
    created = sdk.files.create(file=("in.jsonl", io.BytesIO(content)), purpose="batch")
    assert created.id.startswith("file-") and created.bytes == len(content)
    assert created.purpose == "batch" and created.filename == "in.jsonl"
    assert created.status == "processed"
    again = sdk.files.retrieve(created.id)
    assert again.id == created.id and again.bytes == len(content)
    assert sdk.files.content(created.id).content == content
    with sdk_for(stack, stack.globex_key) as globex:
        with pytest.raises(openai.NotFoundError) as info:
            globex.files.retrieve(created.id)
        assert isinstance(info.value.body, dict) and info.value.body.get("type")
        with pytest.raises(openai.NotFoundError):
            globex.files.content(created.id)
    deleted = sdk.files.delete(created.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(created.id)


def test_files_list_newest_first_page_by_page_per_tenant(sdk: openai.OpenAI, stack: Stack) -> None:
    made = [
        sdk.files.create(file=(f"list-{i}.jsonl", io.BytesIO(b"{}\n")), purpose="batch").id
        for i in range(3)
    ]
    listed = [f.id for f in sdk.files.list(limit=2)]  # the SDK follows `after` page by page
    assert len(listed) == len(set(listed))
    assert [i for i in listed if i in made] == made[::-1]
    first = sdk.files.list(limit=2)
    assert len(first.data) == 2 and first.has_more
    oldest_first = [f.id for f in sdk.files.list(order="asc")]
    assert [i for i in oldest_first if i in made] == made
    assert not [f for f in sdk.files.list(purpose="batch_output") if f.id in made]
    with sdk_for(stack, stack.globex_key) as globex:
        assert not [f for f in globex.files.list() if f.id in made]
    sdk.files.delete(made[1])
    assert [f.id for f in sdk.files.list() if f.id in made] == [made[2], made[0]]
    with pytest.raises(openai.BadRequestError) as info:
        sdk.files.list(limit=0)
    assert info.value.param == "limit"
    with pytest.raises(openai.BadRequestError) as info:
        sdk.files.list(after=made[1])  # deleted: not a cursor any more
    assert info.value.param == "after"
    with pytest.raises(openai.BadRequestError) as info:
        sdk.files.list(after="file-" + "x" * 200)  # longer than any id: refused, not looked up
    assert info.value.param == "after"


def test_a_file_that_is_not_utf8_or_has_no_batch_purpose_is_a_bad_request(
    sdk: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.files.create(file=("in.jsonl", io.BytesIO(b"\xff\xfe\n")), purpose="batch")
    assert "UTF-8" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        sdk.files.create(file=("in.jsonl", io.BytesIO(b"{}\n")), purpose="fine-tune")
    assert info.value.param == "purpose"


def test_a_broken_line_is_a_bad_request_naming_it(sdk: openai.OpenAI, model: str) -> None:
    good = chat_line("a", {"model": model, "messages": [{"role": "user", "content": "hi"}]})
    content = jsonl([good]) + b"{not json\n"
    uploaded = sdk.files.create(file=("bad.jsonl", io.BytesIO(content)), purpose="batch")
    with pytest.raises(openai.BadRequestError) as info:
        sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
    assert "line 2" in info.value.message
    assert isinstance(info.value.body, dict) and "type" in info.value.body


def test_a_batch_of_an_unknown_file_is_not_found(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )


def test_a_chat_batch_runs_and_its_output_file_answers_every_line(
    sdk: openai.OpenAI, model: str
) -> None:
    say = [{"role": "user", "content": "Say hello."}]
    lines = [
        chat_line("hello", {"model": model, "messages": say, "max_tokens": 8, "temperature": 0}),
        chat_line("again", {"model": model, "messages": say, "max_tokens": 4, "temperature": 0}),
        chat_line(
            "verdict",
            {
                "model": model,
                "messages": [{"role": "user", "content": "Rate: 'Great product, fast!'"}],
                "max_tokens": MAX_JSON,
                "temperature": 0,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "verdict", "strict": True, "schema": VERDICT_SCHEMA},
                },
            },
        ),
    ]
    uploaded = sdk.files.create(file=("chat.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "e2e"},
    )
    assert batch.status in ("validating", "in_progress", "finalizing", "completed")
    assert batch.input_file_id == uploaded.id and batch.metadata == {"job": "e2e"}
    assert batch.request_counts is not None and batch.request_counts.total == 3
    deadline = time.monotonic() + BATCH_DEADLINE_S
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        assert time.monotonic() < deadline, f"the batch is still {batch.status}"
        time.sleep(0.5)
        batch = sdk.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    assert batch.request_counts is not None and batch.request_counts.completed == 3
    assert batch.output_file_id is not None and batch.error_file_id is None
    assert batch.completed_at is not None
    assert sdk.files.retrieve(batch.output_file_id).purpose == "batch_output"
    text = sdk.files.content(batch.output_file_id).text
    results = {row["custom_id"]: row for row in map(json.loads, text.splitlines())}
    assert set(results) == {"hello", "again", "verdict"}
    for custom_id, row in results.items():
        assert row["error"] is None and row["response"]["status_code"] == 200, row
        body = row["response"]["body"]
        completion = openai.types.chat.ChatCompletion.model_validate(body)
        assert completion.object == "chat.completion", custom_id
        assert row["id"] == f"batch_req_{row['response']['request_id']}"
        assert completion.id == f"chatcmpl-{row['response']['request_id']}"
    assert (results["again"]["response"]["body"]["usage"]["completion_tokens"]) <= 4
    structured = results["verdict"]["response"]["body"]["choices"][0]["message"]["content"]
    assert validation_errors(json.loads(structured), VERDICT_SCHEMA) == []
    # read again: the same files (written once)
    assert sdk.batches.retrieve(batch.id).output_file_id == batch.output_file_id
    # listed in OpenAI's shape, as the SDK's paginator reads it (strict validation on)
    listed = {b.id: b for b in sdk.batches.list(limit=1)}
    assert batch.id in listed, "the paginator follows last_id past the first page"
    mine = listed[batch.id]
    assert (mine.object, mine.endpoint, mine.input_file_id) == (
        "batch",
        "/v1/chat/completions",
        uploaded.id,
    )
    assert mine.status == "completed" and mine.output_file_id == batch.output_file_id


def test_a_cancelled_batch_ends_cancelled_with_an_error_file(
    sdk: openai.OpenAI, model: str
) -> None:
    long = [{"role": "user", "content": "Write a long essay about the Roman Empire."}]
    lines = [
        chat_line(f"r{i}", {"model": model, "messages": long, "max_tokens": 400}) for i in range(6)
    ]
    uploaded = sdk.files.create(file=("long.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = sdk.batches.cancel(batch.id)
    assert batch.status in ("cancelling", "cancelled", "finalizing")
    deadline = time.monotonic() + BATCH_DEADLINE_S
    while batch.status != "cancelled":
        assert time.monotonic() < deadline, f"the batch is still {batch.status}"
        time.sleep(0.5)
        batch = sdk.batches.retrieve(batch.id)
    assert batch.error_file_id is not None
    rows = [json.loads(r) for r in sdk.files.content(batch.error_file_id).text.splitlines()]
    cancelled = [r for r in rows if r["error"] and r["error"]["code"] == "batch_cancelled"]
    assert cancelled and all(r["response"] is None for r in cancelled)
    assert {r["custom_id"] for r in rows} <= {f"r{i}" for i in range(6)}


def test_an_upload_over_the_limit_is_413_in_openai_shape() -> None:
    prefix = f"sgflow-test-{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    settings = Settings(redis_url=REDIS_URL, redis_prefix=prefix, max_file_bytes=2048)
    key = KeyStore(client, prefix=prefix).create_key("acme")[1]
    server = ServerThread(create_app(settings))
    url = server.__enter__()
    try:
        r = httpx.post(
            f"{url}/v1/files",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": ("big.jsonl", b"x" * 4096)},
            data={"purpose": "batch"},
        )
        assert r.status_code == 413, r.text
        error = r.json()["error"]
        assert error["sgflow_code"] == "limit.file_size" and "type" in error
        small = httpx.post(
            f"{url}/v1/files",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": ("ok.jsonl", b"{}\n")},
            data={"purpose": "batch"},
        )
        assert small.status_code == 200, small.text
    finally:
        server.__exit__(None, None, None)
        for k in client.scan_iter(f"{prefix}*"):
            client.delete(k)
