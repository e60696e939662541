"""``sgflow bench engine``: the embedded engine's speed, as ratios measured in one run.

Starts its own ``sgflow engine`` on a free port and compares, on the same model and CPU:
1. decode tokens/s of ``/generate`` ÷ llama-cpp-python called directly (target >= 0.9);
2. JSON-Schema-constrained ÷ unconstrained streamed decode tokens/s on the engine (>= 0.9);
3. engine JSON tokens/s ÷ llama-cpp-python's ``response_format`` JSON tokens/s (>= 1.5);
4. time to first token with a ~1,000-token prefix cached ÷ uncached (<= 0.2).

Each figure is the median of several runs after one discarded warm-up run (prompt prefixes
cached, grammars compiled, on both sides). The direct llama-cpp-python baseline is loaded
only after the engine has finished generating (it stays up, idle): they never share the CPU.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from sgflow.bench._common import flush_cache
from sgflow.bench.report import Report, Target
from sgflow.engine.launcher import EngineProcess
from sgflow.engine.model import default_model_path

__all__ = ["run"]

THREADS = 2
JSON_MAX_TOKENS = 320
SYSTEM = "You are a helpful assistant."
STORY = "Write a long story about a lighthouse keeper and a storm."
RECORD = "Invent a book and describe it as JSON: title, year, author, genres and chapters."
PLACES = ["Ardmore", "Belcastle", "Corrin", "Dunmore", "Eskdale", "Fairhaven"]
TARGETS = {
    "decode_vs_llama_cpp": Target(">=", 0.9),
    "json_vs_unconstrained": Target(">=", 0.9),
    "json_vs_llama_cpp_json": Target(">=", 1.5),
    "cached_ttft_vs_uncached": Target("<=", 0.2),
}


def obj(**properties: Any) -> dict[str, Any]:
    """A JSON Schema object: every property required, no others allowed."""
    closed = {"required": list(properties), "additionalProperties": False}
    return {"type": "object", "properties": properties, **closed}


def array(items: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": lo, "maxItems": hi}


TEXT, INT = {"type": "string", "maxLength": 40}, {"type": "integer"}
SCHEMA = obj(  # nested objects and arrays: about 150-250 tokens of JSON
    title=TEXT,
    year=INT,
    author=obj(name=TEXT, born=INT, country=TEXT),
    genres=array(TEXT, 2, 3),
    chapters=array(obj(number=INT, title=TEXT, pages=INT), 2, 3),
    in_print={"type": "boolean"},
)


def chatml(user: str) -> str:
    turns = [("system", SYSTEM), ("user", user)]
    return "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns) + (
        "<|im_start|>assistant\n"
    )


def document(n_facts: int = 36) -> str:
    """About 1,000 tokens of distinct facts (numbers tokenize digit by digit)."""
    return "\n".join(
        f"Fact {i}: the harbour at {PLACES[i % 6]} logged {17 + 7 * i} ships "
        f"and {3 + i % 5} storms in {1900 + 3 * i}."
        for i in range(1, n_facts + 1)
    )


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "runs": [round(v, 5) for v in values]}


def repeat(runs: int, once: Callable[[], float]) -> dict[str, Any]:
    """One discarded warm-up, then ``runs`` measured runs."""
    once()
    return summary([once() for _ in range(runs)])


# -- the engine, over HTTP ---------------------------------------------------------------


@contextmanager
def engine_server() -> Iterator[httpx.Client]:
    with (
        EngineProcess("--threads", str(THREADS), startup_s=180) as engine,
        httpx.Client(base_url=engine.url, timeout=600) as client,
    ):
        yield client


def stream(client: httpx.Client, text: str, **params: Any) -> tuple[dict[str, Any], list[float]]:
    """Streaming ``/generate``: the last chunk and each chunk's arrival time since sending."""
    body = {"text": text, "stream": True, "sampling_params": {"temperature": 0.0, **params}}
    times: list[float] = []
    last: dict[str, Any] = {}
    start = time.perf_counter()
    with client.stream("POST", "/generate", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                times.append(time.perf_counter() - start)
                last = json.loads(line.removeprefix("data: "))
    return last, times


def stream_tps(client: httpx.Client, text: str, **params: Any) -> float:
    """Tokens/s from the first streamed token to the last: prefill excluded."""
    last, times = stream(client, text, **params)
    return (int(last["meta_info"]["completion_tokens"]) - 1) / (times[-1] - times[0])


def e2e_tps(client: httpx.Client, seen: list[Any], text: str, **params: Any) -> float:
    """Non-streaming ``/generate``: tokens (less a matched stop token, which llama-cpp does
    not count) over the request's wall time; the response's meta_info goes to ``seen``."""
    start = time.perf_counter()
    response = client.post(
        "/generate", json={"text": text, "sampling_params": {"temperature": 0.0, **params}}
    )
    wall = time.perf_counter() - start
    response.raise_for_status()
    meta = response.json()["meta_info"]
    seen.append(meta)
    stopped = meta["finish_reason"]["type"] == "stop" and isinstance(
        meta["finish_reason"].get("matched"), int
    )
    return (int(meta["completion_tokens"]) - int(stopped)) / wall


def measure_engine(client: httpx.Client, runs: int, n_tokens: int, raw: dict[str, Any]) -> None:
    story, record, seen = chatml(STORY), chatml(RECORD), list[Any]()
    free: dict[str, Any] = {"max_new_tokens": n_tokens, "ignore_eos": True}
    schema = {"max_new_tokens": JSON_MAX_TOKENS, "json_schema": json.dumps(SCHEMA)}
    probes: dict[str, Callable[[], float]] = {
        "engine_decode_tps": lambda: e2e_tps(client, [], story, **free),
        "engine_stream_decode_tps": lambda: stream_tps(client, record, **free),
        "engine_json_stream_tps": lambda: stream_tps(client, record, **schema),
        "engine_json_tps": lambda: e2e_tps(client, seen, record, **schema),
    }
    for step, (name, probe) in enumerate(probes.items(), start=1):
        print(f"[{step}/7] engine: {name}", flush=True)
        raw[name] = repeat(runs, probe)
    raw["engine_json_tokens"] = [m["completion_tokens"] for m in seen[1:]]
    raw["engine_json_finish"] = [m["finish_reason"]["type"] for m in seen[1:]]


def measure_ttft(client: httpx.Client, runs: int, raw: dict[str, Any]) -> None:
    """Per run: flush, ask about the document (uncached), then a new question (cached)."""
    print("[5/7] engine: time to first token, ~1,000-token prefix uncached and cached", flush=True)
    doc, uncached, cached, meta = document(), [], [], {}
    for i in range(runs + 1):  # the first run is a warm-up
        flush_cache(client)
        first, second = (chatml(f"{doc}\n\nWhich harbour is in fact {k}?") for k in (i + 1, i + 9))
        uncached.append(stream(client, first, max_new_tokens=4)[1][0])
        last, times = stream(client, second, max_new_tokens=4)
        cached.append(times[0])
        meta = last["meta_info"]
    raw["ttft_uncached_s"], raw["ttft_cached_s"] = summary(uncached[1:]), summary(cached[1:])
    raw["ttft_prompt_tokens"] = meta["prompt_tokens"]
    raw["ttft_cached_tokens"] = meta["cached_tokens"]


# -- llama-cpp-python, called directly ---------------------------------------------------


def measure_llama_cpp(runs: int, n_tokens: int, raw: dict[str, Any]) -> None:
    import llama_cpp

    path = default_model_path()
    llm = llama_cpp.Llama(path, n_ctx=2048, n_threads=THREADS, n_batch=512, verbose=False)
    try:
        end_ids = {llm.token_eos(), *llm.tokenize(b"<|im_end|><|endoftext|>", False, True)}
        no_end = {token: -1e9 for token in end_ids}  # forces the length, as ignore_eos does
        messages: Any = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": RECORD}]
        fmt: Any = {"type": "json_object", "schema": SCHEMA}
        counts: list[int] = []

        def tps(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], float]:
            def once() -> float:
                start = time.perf_counter()
                counts.append(
                    int(call(*args, temperature=0.0, **kwargs)["usage"]["completion_tokens"])
                )
                return counts[-1] / (time.perf_counter() - start)

            return once

        print("[6/7] llama-cpp-python directly (engine idle): decode", flush=True)
        decode = tps(llm.create_completion, chatml(STORY), max_tokens=n_tokens, logit_bias=no_end)
        raw["llama_cpp_decode_tps"] = repeat(runs, decode)
        print("[7/7] llama-cpp-python directly: JSON via response_format", flush=True)
        counts.clear()
        chat = tps(
            llm.create_chat_completion, messages, response_format=fmt, max_tokens=JSON_MAX_TOKENS
        )
        raw["llama_cpp_json_tps"] = repeat(runs, chat)
        raw["llama_cpp_json_tokens"] = counts[1:]
    finally:
        llm.close()  # free the model before anything else runs


# -- report ------------------------------------------------------------------------------


def ratios_of(raw: dict[str, Any]) -> dict[str, float]:
    def med(key: str) -> float:
        return float(raw[key]["median"])

    return {
        "decode_vs_llama_cpp": med("engine_decode_tps") / med("llama_cpp_decode_tps"),
        "json_vs_unconstrained": med("engine_json_stream_tps") / med("engine_stream_decode_tps"),
        "json_vs_llama_cpp_json": med("engine_json_tps") / med("llama_cpp_json_tps"),
        "cached_ttft_vs_uncached": med("ttft_cached_s") / med("ttft_uncached_s"),
    }


def run(*, quick: bool) -> Report:
    import llama_cpp

    runs, n_tokens = (3, 64) if quick else (5, 128)
    raw: dict[str, Any] = {
        "runs": runs,
        "max_new_tokens": n_tokens,
        "threads": THREADS,
        "llama_cpp_python": llama_cpp.__version__,
        "model": os.path.basename(default_model_path()),
    }
    print(f"sgflow bench engine: medians of {runs} runs; starting the engine", flush=True)
    with engine_server() as client:
        measure_engine(client, runs, n_tokens, raw)
        measure_ttft(client, runs, raw)
        measure_llama_cpp(runs, n_tokens, raw)  # the engine is up but idle
    report = Report("engine", raw=raw)
    for name, value in ratios_of(raw).items():
        report.add(name, value, TARGETS[name])
    return report
