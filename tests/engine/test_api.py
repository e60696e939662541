"""SGLang's native API as served by ``sgflow engine``: shapes, parameters and refusals.
Real engine process, real model."""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from sgflow.engine.launcher import EngineProcess
from sgflow.errors import code_info
from tests.conftest import chat

pytestmark = pytest.mark.engine

Q = chat("What is the capital of France?")


def gen(client: httpx.Client, **body: Any) -> Any:
    r = client.post("/generate", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_info_endpoints_and_deprecated_aliases(client: httpx.Client) -> None:
    for path in ("/model_info", "/get_model_info"):
        info = client.get(path).json()
        assert info["model_path"].endswith(".gguf")
        assert info["is_generation"] is True
        # read from the GGUF (general.architecture), as SGLang reads the HF config
        assert info["model_type"] == "llama" and info["architectures"] == ["LlamaForCausalLM"]
    for path in ("/server_info", "/get_server_info"):
        info = client.get(path).json()
        assert info["tp_size"] == 1 and info["dp_size"] == 1
        assert info["max_total_num_tokens"] >= info["context_length"] > 0
        assert info["omp_wait_policy"] == "PASSIVE"  # the engine's default (README)
        assert "last_gen_throughput" in info["internal_states"][0]
    load = client.get("/get_load").json()
    assert isinstance(load, list) and isinstance(load[0]["num_tokens"], int)
    assert client.get("/health").status_code == 200
    assert client.get("/health_generate").status_code == 200
    assert client.get("/v1/models").json()["data"][0]["id"]


def test_meta_info_shape_and_stop_finish(client: httpx.Client) -> None:
    out = gen(client, text=Q, sampling_params={"max_new_tokens": 40, "temperature": 0})
    meta = out["meta_info"]
    assert "Paris" in out["text"]
    assert set(meta) >= {
        "id",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "finish_reason",
        "e2e_latency",
    }
    assert meta["finish_reason"] == {"type": "stop", "matched": 2}  # <|im_end|>
    assert meta["prompt_tokens"] == 16


def test_length_finish_counts_tokens(client: httpx.Client) -> None:
    out = gen(client, text=Q, sampling_params={"max_new_tokens": 3, "ignore_eos": True})
    assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 3}
    assert out["meta_info"]["completion_tokens"] == 3


def test_stop_string_is_trimmed_and_reported(client: httpx.Client) -> None:
    out = gen(
        client, text=Q, sampling_params={"max_new_tokens": 40, "temperature": 0, "stop": [" is"]}
    )
    assert out["text"] == "The capital of France"
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": " is"}
    kept = gen(
        client,
        text=Q,
        sampling_params={
            "max_new_tokens": 40,
            "temperature": 0,
            "stop": " is",
            "no_stop_trim": True,
        },
    )
    assert kept["text"] == "The capital of France is"


def test_stop_token_ids(client: httpx.Client) -> None:
    first = gen(
        client, text=Q, sampling_params={"max_new_tokens": 1, "temperature": 0}, return_logprob=True
    )
    token = first["meta_info"]["output_token_logprobs"][0][1]
    out = gen(
        client,
        text=Q,
        sampling_params={"max_new_tokens": 10, "temperature": 0, "stop_token_ids": [token]},
    )
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": token}
    assert out["text"] == ""


def test_min_new_tokens_holds_off_the_end(client: httpx.Client) -> None:
    short = gen(
        client, text=chat("Say OK."), sampling_params={"max_new_tokens": 30, "temperature": 0}
    )
    n = short["meta_info"]["completion_tokens"]
    longer = gen(
        client,
        text=chat("Say OK."),
        sampling_params={"max_new_tokens": 30, "temperature": 0, "min_new_tokens": n + 3},
    )
    assert longer["meta_info"]["completion_tokens"] >= n + 3


def prompt_ids(item: dict[str, Any]) -> list[int]:
    return [entry[1] for entry in item["meta_info"]["input_token_logprobs"]]


def test_list_input_returns_a_list_in_order(client: httpx.Client) -> None:
    # Each answer is matched to its prompt by the prompt tokens it reports, not by its text:
    # llama.cpp's kernels are not batch-invariant (the batch and the KV cells a sequence
    # lands in change the last bits of the logits), so a batched greedy answer may differ
    # from a lone one by a token, as in SGLang without deterministic inference.
    prompts = [chat("Say one."), chat("Say two, please."), chat("Say three, now, loudly.")]
    probe = {"return_logprob": True, "logprob_start_len": 0}
    out = gen(
        client, text=prompts, sampling_params={"max_new_tokens": 8, "temperature": 0}, **probe
    )
    assert isinstance(out, list) and len(out) == 3
    for prompt, item in zip(prompts, out, strict=True):
        alone = gen(client, text=prompt, sampling_params={"max_new_tokens": 0}, **probe)
        assert prompt_ids(item) == prompt_ids(alone)
        assert item["meta_info"]["prompt_tokens"] == alone["meta_info"]["prompt_tokens"]
        assert item["text"] and item["meta_info"]["completion_tokens"] > 0


def test_n_samples_each_answer_the_prompt(client: httpx.Client) -> None:
    # That a seed reproduces its samples is tested over the fake model, which is
    # batch-invariant (test_scheduler.py); here: n answers, each a generation of its own.
    params = {"max_new_tokens": 12, "temperature": 1.0, "n": 3, "sampling_seed": 42}
    out = gen(client, text=chat("Tell me a word."), sampling_params=params)
    assert isinstance(out, list) and len(out) == 3
    assert len({o["meta_info"]["id"] for o in out}) == 3
    for item in out:
        assert item["text"] and 0 < item["meta_info"]["completion_tokens"] <= 12
    both = gen(client, text=[chat("Hi."), chat("Bye.")], sampling_params={**params, "n": 2})
    assert isinstance(both, list) and len(both) == 4


def test_input_ids_give_the_same_result_as_text(client: httpx.Client) -> None:
    by_text = gen(
        client,
        text=Q,
        sampling_params={"max_new_tokens": 0},
        return_logprob=True,
        logprob_start_len=0,
    )
    ids = [entry[1] for entry in by_text["meta_info"]["input_token_logprobs"]]
    assert len(ids) == 16
    by_ids = gen(client, input_ids=ids, sampling_params={"max_new_tokens": 10, "temperature": 0})
    by_text2 = gen(client, text=Q, sampling_params={"max_new_tokens": 10, "temperature": 0})
    assert by_ids["text"] == by_text2["text"]


def test_prefill_only_request(client: httpx.Client) -> None:
    out = gen(client, text=Q, sampling_params={"max_new_tokens": 0})
    assert out["text"] == ""
    assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 0}
    assert out["meta_info"]["completion_tokens"] == 0


def test_logprobs_in_sglang_form(client: httpx.Client) -> None:
    out = gen(
        client,
        text=Q,
        sampling_params={"max_new_tokens": 4, "temperature": 0},
        return_logprob=True,
        logprob_start_len=0,
        top_logprobs_num=3,
        return_text_in_logprobs=True,
    )
    meta = out["meta_info"]
    inp, outp = meta["input_token_logprobs"], meta["output_token_logprobs"]
    assert len(inp) == 16 and inp[0][0] is None
    assert all(
        lp <= 0 and isinstance(tid, int) and isinstance(text, str) for lp, tid, text in inp[1:]
    )
    assert inp[0][2] == "<|im_start|>"
    assert len(outp) == meta["completion_tokens"] == 4
    # greedy: each chosen token is the top-1 alternative
    for chosen, top in zip(outp, meta["output_top_logprobs"], strict=True):
        assert len(top) == 3 and top[0][1] == chosen[1]
        assert top[0][0] == pytest.approx(chosen[0])
    assert len(meta["input_top_logprobs"]) == 16


def test_default_logprob_start_returns_the_last_prompt_token(client: httpx.Client) -> None:
    out = gen(client, text=Q, sampling_params={"max_new_tokens": 1}, return_logprob=True)
    assert len(out["meta_info"]["input_token_logprobs"]) == 1
    assert out["meta_info"]["input_token_logprobs"][0][2] is None  # no text unless asked


def test_streaming_is_cumulative_sse_ending_with_done(client: httpx.Client) -> None:
    events: list[str] = []
    with client.stream(
        "POST",
        "/generate",
        json={
            "text": Q,
            "stream": True,
            "sampling_params": {"max_new_tokens": 6, "temperature": 0},
        },
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data:")]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[5:]) for e in events[:-1]]
    texts = [c["text"] for c in chunks]
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts))
    assert chunks[-1]["meta_info"]["finish_reason"] is not None
    final = gen(client, text=Q, sampling_params={"max_new_tokens": 6, "temperature": 0})
    assert texts[-1] == final["text"]


LAYOUT_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "pattern": "^[A-Za-z ]{1,20}$"},
        "country": {"type": "object", "properties": {"code": {"enum": ["FR", "DE", "IT"]}}},
        "population_millions": {"type": "integer", "minimum": 0, "maximum": 100},
        "capital": {"type": "boolean"},
    },
    "required": ["city", "country", "population_millions", "capital"],
    "additionalProperties": False,
}


def test_json_schema_output_is_laid_out_with_indent_2_by_default(client: httpx.Client) -> None:
    """Every gap between tokens is fixed (``json.dumps(indent=2)``): the answer is its own
    re-serialisation, and the engine says which layout it decodes with."""
    out = gen(
        client,
        text=Q,
        sampling_params={
            "max_new_tokens": 80,
            "temperature": 0,
            "json_schema": json.dumps(LAYOUT_SCHEMA),
        },
    )
    assert out["meta_info"]["finish_reason"]["type"] == "stop", out
    assert out["text"] == json.dumps(json.loads(out["text"]), indent=2)
    assert client.get("/server_info").json()["json_layout"] == "indent"


def test_free_layout_from_the_settings_bounds_each_gap() -> None:
    """``SGFLOW_JSON_LAYOUT=free`` (the setting every process reads): the model picks the
    whitespace, at most ``SGFLOW_MAX_JSON_WHITESPACE`` characters per gap."""
    env = {**os.environ, "SGFLOW_JSON_LAYOUT": "free", "SGFLOW_MAX_JSON_WHITESPACE": "2"}
    with (
        EngineProcess("--threads", "2", env=env) as proc,
        httpx.Client(base_url=proc.url, timeout=120) as c,
    ):
        info = c.get("/server_info").json()
        assert (info["json_layout"], info["max_json_whitespace"]) == ("free", 2)
        prompts = [chat("Describe Paris as JSON."), chat("Describe Rome as JSON.")]
        spec = {"max_new_tokens": 80, "temperature": 0, "json_schema": json.dumps(LAYOUT_SCHEMA)}
        outs = gen(c, text=prompts, sampling_params=spec)
        for out in outs:
            value = json.loads(out["text"])
            outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', out["text"])  # strings blanked
            assert not re.search(r"\s{3}", outside), out["text"]
            assert set(value) == set(LAYOUT_SCHEMA["required"])


BAD_INPUTS: list[tuple[str, Any, str]] = [
    ("not-json", "{nope", ""),
    ("not-an-object", [1, 2], ""),
    ("unknown-field", {"text": "a", "temperature": 0}, "/temperature"),
    (
        "unknown-sampling-param",
        {"text": "a", "sampling_params": {"temprature": 0}},
        "/sampling_params/temprature",
    ),
    (
        "wrong-type",
        {"text": "a", "sampling_params": {"max_new_tokens": "ten"}},
        "/sampling_params/max_new_tokens",
    ),
    ("no-prompt", {"sampling_params": {}}, "/text"),
    (
        "bad-regex",
        {"text": "a", "sampling_params": {"regex": "(unclosed"}},
        "/sampling_params/regex",
    ),
    (
        "bad-schema-json",
        {"text": "a", "sampling_params": {"json_schema": "{not json"}},
        "/sampling_params/json_schema",
    ),
    (
        "bad-schema-type",
        {"text": "a", "sampling_params": {"json_schema": '{"type": "objekt"}'}},
        "/sampling_params/json_schema",
    ),
    (
        "bad-ebnf",
        {"text": "a", "sampling_params": {"ebnf": "root ::= undefined_rule"}},
        "/sampling_params/ebnf",
    ),
    (
        "two-constraints",
        {"text": "a", "sampling_params": {"regex": "a", "json_schema": "{}"}},
        "/sampling_params",
    ),
    ("prompt-over-context", {"text": "word " * 9000}, "/text"),
    (
        "generation-over-context",
        {"text": "hi", "sampling_params": {"max_new_tokens": 9000}},
        "/sampling_params/max_new_tokens",
    ),
    ("token-id-out-of-vocab", {"input_ids": [1, 999999]}, "/input_ids"),
    (
        "bad-logit-bias",
        {"text": "a", "sampling_params": {"logit_bias": {"x": 1.0}}},
        "/sampling_params/logit_bias",
    ),
    ("images", {"text": "a", "image_data": "http://x/y.png"}, "/image_data"),
]


@pytest.mark.parametrize(("name", "body", "field"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_4xx_naming_the_field(
    client: httpx.Client, name: str, body: Any, field: str
) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    r = client.post("/generate", content=content, headers={"Content-Type": "application/json"})
    error = r.json()["error"]
    # the status is the one the registry gives the code: 400 for a body that is not JSON
    # (request.malformed_json), 422 for JSON that says something wrong
    assert (
        r.status_code == code_info(error["code"]).status == (400 if name == "not-json" else 422)
    ), r.text
    assert error["field"] == field
    assert error["message"]
    # and the engine keeps serving
    assert client.get("/health").status_code == 200


def test_engine_serves_after_bad_inputs(client: httpx.Client) -> None:
    out = gen(client, text=Q, sampling_params={"max_new_tokens": 4, "temperature": 0})
    assert out["meta_info"]["completion_tokens"] == 4


def test_a_full_queue_is_a_503_with_retry_after_and_shows_in_get_load() -> None:
    """An engine of its own: one running place, two waiting."""
    with (
        EngineProcess("--threads", "2", "--max-running", "1", "--max-queued", "2") as proc,
        httpx.Client(base_url=proc.url, timeout=120) as c,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        body = {
            "text": [chat(f"Count to {i}.") for i in (100, 200, 300)],
            "sampling_params": {"max_new_tokens": 300, "ignore_eos": True},
        }
        # three sequences on an empty queue: more than the bound, taken all the same
        first = pool.submit(lambda: c.post("/generate", json=body))
        deadline = time.monotonic() + 60
        load = c.get("/get_load").json()[0]
        while load["num_waiting_reqs"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # polling for the condition, not timing it
            load = c.get("/get_load").json()[0]
        # 3 between the submission and the first admission, 2 while one of them runs
        assert load["num_waiting_reqs"] in (2, 3) and load["max_waiting_reqs"] == 2, load
        r = c.post("/generate", json={"text": Q, "sampling_params": {"max_new_tokens": 4}})
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1"
        error = r.json()["error"]
        assert (error["code"], error["limit"], error["retryable"]) == (
            "engine.overloaded",
            2,
            True,
        )
        assert "limit of 2" in error["message"]
        done = first.result(timeout=120)
        assert done.status_code == 200 and len(done.json()) == 3
        after = c.post("/generate", json={"text": Q, "sampling_params": {"max_new_tokens": 4}})
        assert after.status_code == 200, after.text
        assert c.get("/server_info").json()["max_queued_requests"] == 2
