"""The contract sgflow's llama.cpp adapter relies on, checked against a live ``llama-server``.

The server is llama.cpp's own, built from the sources vendored in the llama-cpp-python sdist
(``sgflow peers install llamacpp``); field names are those of
``vendor/llama.cpp/tools/server/server-task.cpp`` and ``server-common.cpp``.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import jsonschema
import pytest

from sgflow.peers.llamacpp_server import LLAMA_VERSION, LlamaServer
from tests.conftest import chat

pytestmark = pytest.mark.peers


def test_llama_version_is_the_makefiles() -> None:
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    assert re.search(rf"^LLAMA_VERSION := {re.escape(LLAMA_VERSION)}$", makefile, re.M)


def test_health_is_ok(llama: httpx.Client) -> None:
    r = llama.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_props_report_the_model_and_identify_llama_server(
    llama: httpx.Client, llama_server: LlamaServer
) -> None:
    props = llama.get("/props").json()
    assert props["model_path"] == llama_server.model_path
    assert props["total_slots"] == llama_server.slots
    # What tells llama-server apart from other OpenAI-style engines.
    assert "params" in props["default_generation_settings"]
    assert isinstance(props["build_info"], str) and props["build_info"]
    models = llama.get("/v1/models").json()
    assert [m["owned_by"] for m in models["data"]] == ["llamacpp"]


COLOR = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "green", "blue"]}},
    "required": ["color"],
    "additionalProperties": False,
}


def test_json_schema_output_is_valid(llama: httpx.Client) -> None:
    body = {
        "prompt": chat("What colour is the sky? Answer in JSON."),
        "n_predict": 16,
        "temperature": 0,
        "json_schema": COLOR,
    }
    out = llama.post("/completion", json=body).json()
    assert out["stop_type"] == "eos", out
    jsonschema.validate(json.loads(out["content"]), COLOR)


def test_gbnf_grammar_output_matches(llama: httpx.Client) -> None:
    body = {
        "prompt": chat("Give me a phone number."),
        "n_predict": 16,
        "temperature": 0,
        "grammar": 'root ::= "+1 " [0-9]{3} "-" [0-9]{4}',
    }
    out = llama.post("/completion", json=body).json()
    assert out["stop_type"] == "eos", out
    assert re.fullmatch(r"\+1 [0-9]{3}-[0-9]{4}", out["content"]), out["content"]


def test_shared_prefix_is_served_from_the_prompt_cache(llama: httpx.Client) -> None:
    # A prefix no earlier request shared, so only the second request can reuse it.
    prefix = f"Session {uuid.uuid4().hex}. " + "The quick brown fox jumps over the lazy dog. " * 20
    n_prefix = len(llama.post("/tokenize", json={"content": prefix}).json()["tokens"])

    def complete(suffix: str) -> dict[str, object]:
        body = {"prompt": prefix + suffix, "n_predict": 2, "temperature": 0}
        return dict(llama.post("/completion", json=body).json())

    first = complete("\nQuestion one:")
    second = complete("\nQuestion two:")
    first_t, second_t = first["timings"], second["timings"]
    assert isinstance(first_t, dict) and isinstance(second_t, dict)
    assert first_t["cache_n"] < n_prefix // 2, first_t
    assert second_t["cache_n"] >= n_prefix - 2, (n_prefix, second_t)
    assert second_t["cache_n"] + second_t["prompt_n"] == second["tokens_evaluated"]


def test_stream_is_sse_deltas_ending_with_stop(
    llama: httpx.Client, llama_server: LlamaServer
) -> None:
    body = {"prompt": chat("Count to five."), "n_predict": 8, "temperature": 0, "stream": True}
    events = []
    # llama-server closes the connection after a stream (despite "Keep-Alive: timeout=5"), so
    # a stream gets a connection of its own: a pooled one would fail the next request.
    with (
        httpx.Client(base_url=llama_server.url, timeout=120) as own,
        own.stream("POST", "/completion", json=body) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
    assert events and all(not e["stop"] for e in events[:-1])
    last = events[-1]
    assert last["stop"] is True and last["stop_type"] in ("eos", "limit")
    assert "timings" in last
    streamed = "".join(e["content"] for e in events)
    whole = llama.post("/completion", json={**body, "stream": False}).json()["content"]
    assert streamed == whole
