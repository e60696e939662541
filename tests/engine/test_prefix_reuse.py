"""Prefix reuse across requests, measured by ``cached_tokens``. Real engine, real model."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import chat

pytestmark = pytest.mark.engine

DOC = " ".join(
    f"Line {i}: the warehouse shipped {i * 7} boxes of item {i % 13}." for i in range(60)
)


def run(client: httpx.Client, text: str, max_new_tokens: int = 4) -> dict:
    r = client.post(
        "/generate",
        json={
            "text": text,
            "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0},
        },
    )
    assert r.status_code == 200, r.text
    return r.json()["meta_info"]


def prefix_tokens(client: httpx.Client, text: str) -> int:
    return run(client, text, max_new_tokens=0)["prompt_tokens"]


def test_non_adjacent_request_reuses_at_least_90_percent_of_a_long_prefix(
    client: httpx.Client,
) -> None:
    assert client.post("/flush_cache").status_code == 200
    prefix = chat(f"Document:\n{DOC}\n\nQuestion: ", system="You answer questions about documents.")
    n_prefix = prefix_tokens(client, prefix)
    assert n_prefix > 700
    first = run(client, prefix + "How many lines are there?")
    assert first["cached_tokens"] >= 0.9 * n_prefix  # the prefill-only request above cached it
    # unrelated requests in between, so the prefix is not the last thing the engine saw
    for i in range(3):
        run(client, chat(f"Unrelated question number {i}: what is {i} + {i}?"))
    second = run(client, prefix + "Which item was shipped most?")
    assert second["cached_tokens"] >= 0.9 * n_prefix, second


def test_flush_cache_forgets_prefixes(client: httpx.Client) -> None:
    text = chat(f"Summarise: {DOC[:800]}")
    run(client, text)
    assert run(client, text)["cached_tokens"] > 100
    r = client.post("/flush_cache")
    assert r.status_code == 200
    assert run(client, text)["cached_tokens"] == 0


def test_multi_turn_conversation_grows_its_cached_prefix(client: httpx.Client) -> None:
    conversation = chat("Name a planet.", system="Be brief.")
    cached = []
    for turn in ("Name another one.", "And one more."):
        r = client.post(
            "/generate",
            json={
                "text": conversation,
                "sampling_params": {"max_new_tokens": 12, "temperature": 0},
            },
        ).json()
        cached.append(r["meta_info"]["cached_tokens"])
        conversation += (
            r["text"] + f"<|im_end|>\n<|im_start|>user\n{turn}<|im_end|>\n<|im_start|>assistant\n"
        )
    final = client.post(
        "/generate",
        json={"text": conversation, "sampling_params": {"max_new_tokens": 4, "temperature": 0}},
    ).json()["meta_info"]
    cached.append(final["cached_tokens"])
    assert cached[1] > cached[0] and cached[2] > cached[1], cached


def test_server_info_reports_cache_usage(client: httpx.Client) -> None:
    state = client.get("/server_info").json()["internal_states"][0]
    assert state["cache_hit_tokens"] > 0
    assert (
        0 < state["cache_used_tokens"] <= client.get("/server_info").json()["max_total_num_tokens"]
    )


def test_generated_text_sent_back_is_reused_across_the_tokenization_boundary(
    client: httpx.Client,
) -> None:
    """A program's next step sends the generated JSON back as text; its re-tokenization
    differs from the generated tokens, yet the cached KV must still be reused."""
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "maxItems": 6,
                "items": {
                    "type": "object",
                    "required": ["name", "qty"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "maxLength": 20},
                        "qty": {"type": "integer", "minimum": 0, "maximum": 99},
                    },
                },
            }
        },
    }
    prompt = chat("List some groceries with quantities as JSON.", system="You output JSON.")
    first = client.post(
        "/generate",
        json={
            "text": prompt,
            "sampling_params": {
                "max_new_tokens": 200,
                "temperature": 0,
                "json_schema": __import__("json").dumps(schema),
            },
        },
    ).json()
    generated = first["meta_info"]["completion_tokens"]
    assert generated > 20
    follow = (
        prompt
        + first["text"]
        + "<|im_end|>\n<|im_start|>user\nHow many items?<|im_end|>\n<|im_start|>assistant\n"
    )
    meta = run(client, follow)
    reusable = first["meta_info"]["prompt_tokens"] + generated - 1
    assert meta["cached_tokens"] >= 0.9 * reusable, (meta, reusable)
