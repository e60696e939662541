"""``/v1/extract`` and the OpenAI routes compile the schema against the model's vocabulary
beside the run: a schema that passes every static check but does not compile in time is a
422 (400 in OpenAI's shape) naming it, and its run is cancelled (no worker is needed: the run
never has to start)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
import redis

from sgflow.bench.jsonschemabench import data_dir
from sgflow.service import Settings, create_app
from sgflow.store import KeyStore
from tests.service.conftest import ServerThread

SNOWPLOW = data_dir() / "schemas" / "Snowplow" / "sp_0_Normalized.json"


@pytest.fixture(scope="module")
def client(settings: Settings, redis_client: redis.Redis, prefix: str) -> Iterator[httpx.Client]:
    app = create_app(settings.model_copy(update={"compile_timeout_s": 2.0}))
    key = KeyStore(redis_client, prefix=prefix).create_key("compile-check")[1]
    with (
        ServerThread(app) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http,
    ):
        yield http


def test_a_schema_that_does_not_compile_in_time_is_refused_and_its_run_cancelled(
    client: httpx.Client,
) -> None:
    schema = json.loads(SNOWPLOW.read_text())
    r = client.post("/v1/extract", json={"schema": schema, "text": "an event", "timeout_s": 30})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "grammar.compile_timeout"
    assert error["field"] == "/schema"
    assert "within 2s" in error["message"]
    run = client.get(f"/v1/runs/{error['run']}").json()  # the run queued meanwhile
    assert run["status"] == "cancelled"
    # a second time: the verdict is remembered, the answer the same
    again = client.post("/v1/extract", json={"schema": schema, "text": "x", "timeout_s": 0})
    assert again.status_code == 422 and again.json()["error"]["code"] == "grammar.compile_timeout"


def test_a_schema_that_compiles_is_queued_as_before(client: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}}
    r = client.post("/v1/extract", json={"schema": schema, "text": "Ada", "timeout_s": 0})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"


def test_an_openai_answer_schema_that_does_not_compile_is_refused_the_same_way(
    client: httpx.Client,
) -> None:
    schema = json.loads(SNOWPLOW.read_text())
    sdk = openai.OpenAI(
        base_url=str(client.base_url.join("/v1")),
        api_key=client.headers["Authorization"].removeprefix("Bearer "),
        max_retries=0,
    )
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "an event"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "event", "schema": schema, "strict": False},
            },
        )
    body = info.value.body
    assert isinstance(body, dict), body
    assert (
        body["sgflow_code"] == "grammar.compile_timeout" and info.value.param == "response_format"
    )
    run = client.get(f"/v1/runs/{body['run']}").json()  # the run queued meanwhile
    assert run["status"] == "cancelled"
