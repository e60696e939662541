"""``sgflow bench engine``: the embedded engine's speed, as ratios measured in one run.

Starts its own ``sgflow engine`` on a free port and compares, on the same model and CPU:

1. decode tokens/s of ``/generate`` ÷ llama-cpp-python called directly (target >= 0.9);
2. JSON-Schema-constrained ÷ unconstrained decode tokens/s on the engine (>= 0.9);
3. engine JSON tokens/s ÷ llama-cpp-python's ``response_format`` JSON tokens/s (>= 1.5);
4. time to first token with a ~1,000-token prefix cached ÷ uncached (<= 0.2).

Each figure is the median of several runs after one warm-up run. The direct
llama-cpp-python baseline is loaded only after the engine has finished generating (the
engine stays up, idle), so the two never share the CPU.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from sgflow.engine.model import default_model_path

__all__ = ["main"]

THREADS = 2
JSON_MAX_TOKENS = 256
SYSTEM = "You are a helpful assistant."
STORY = "Write a long story about a lighthouse keeper and a storm."
RECORD = "Invent a book and describe it as JSON: title, year, author, genres and chapters."
_TEXT = {"type": "string", "maxLength": 40}
_CHAPTER = {
    "type": "object",
    "properties": {"number": {"type": "integer"}, "title": _TEXT, "pages": {"type": "integer"}},
    "required": ["number", "title", "pages"],
    "additionalProperties": False,
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": _TEXT,
        "year": {"type": "integer"},
        "author": {
            "type": "object",
            "properties": {"name": _TEXT, "born": {"type": "integer"}, "country": _TEXT},
            "required": ["name", "born", "country"],
            "additionalProperties": False,
        },
        "genres": {"type": "array", "items": _TEXT, "minItems": 2, "maxItems": 4},
        "chapters": {"type": "array", "items": _CHAPTER, "minItems": 3, "maxItems": 5},
        "in_print": {"type": "boolean"},
    },
    "required": ["title", "year", "author", "genres", "chapters", "in_print"],
    "additionalProperties": False,
}
PLACES = [
    "Ardmore",
    "Belcastle",
    "Corrin",
    "Dunmore",
    "Eskdale",
    "Fairhaven",
    "Glenrock",
    "Harwick",
]


@dataclass(frozen=True)
class Target:
    op: str  # ">=" or "<="
    value: float

    def met(self, x: float) -> bool:
        return x >= self.value if self.op == ">=" else x <= self.value


TARGETS = {
    "decode_vs_llama_cpp": Target(">=", 0.9),
    "json_vs_unconstrained": Target(">=", 0.9),
    "json_vs_llama_cpp_json": Target(">=", 1.5),
    "cached_ttft_vs_uncached": Target("<=", 0.2),
}


def chatml(user: str) -> str:
    return (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def document(n_facts: int = 36) -> str:
    """About 1,000 tokens of distinct facts (numbers tokenize digit by digit)."""
    return "\n".join(
        f"Fact {i}: the harbour at {PLACES[i % 8]} logged {17 + 7 * i} ships "
        f"and {3 + i % 5} storms in {1900 + 3 * i}."
        for i in range(1, n_facts + 1)
    )


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "runs": [round(v, 5) for v in values]}


def repeat(runs: int, once: Callable[[int], float]) -> list[float]:
    """One discarded warm-up (prefix cached, grammar compiled), then ``runs`` measured."""
    once(-1)
    return [once(i) for i in range(runs)]


# -- the engine process ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(
    url: str, proc: subprocess.Popen[bytes], log: IO[bytes], limit_s: float = 180
) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            tail = log.read().decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"sgflow engine exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"sgflow engine did not answer /health within {limit_s:g}s")


@contextmanager
def engine_server() -> Iterator[httpx.Client]:
    port = free_port()
    cmd = [sys.executable, "-m", "sgflow.cli", "engine", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([*cmd, "--threads", str(THREADS)], stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, log)
            with httpx.Client(base_url=url, timeout=600) as client:
                yield client
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def generate(client: httpx.Client, text: str, **params: Any) -> tuple[dict[str, Any], float]:
    """Non-streaming ``/generate``: the response and its wall time."""
    body = {"text": text, "sampling_params": {"temperature": 0.0, **params}}
    start = time.perf_counter()
    response = client.post("/generate", json=body)
    response.raise_for_status()
    return response.json(), time.perf_counter() - start


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
                last = json.loads(line[len("data: ") :])
    return last, times


def stream_decode_tps(client: httpx.Client, text: str, **params: Any) -> float:
    """Tokens/s from the first streamed token to the last (prefill excluded)."""
    last, times = stream(client, text, **params)
    return (last["meta_info"]["completion_tokens"] - 1) / (times[-1] - times[0])


def content_tokens(meta: dict[str, Any]) -> int:
    """Completion tokens less a matched end-of-sequence token (llama-cpp does not count it)."""
    finish = meta.get("finish_reason") or {}
    stopped = finish.get("type") == "stop" and isinstance(finish.get("matched"), int)
    return int(meta["completion_tokens"]) - int(stopped)


def flush(client: httpx.Client) -> None:
    for _ in range(50):
        if client.post("/flush_cache").status_code == 200:
            return
        time.sleep(0.1)
    raise RuntimeError("/flush_cache kept answering 400 (engine busy)")


def measure_engine(client: httpx.Client, runs: int, n_tokens: int, raw: dict[str, Any]) -> None:
    print(f"[1/4] engine: unconstrained decode, {n_tokens} tokens", flush=True)

    def decode(_: int) -> float:
        result, wall = generate(client, chatml(STORY), max_new_tokens=n_tokens, ignore_eos=True)
        return result["meta_info"]["completion_tokens"] / wall

    raw["engine_decode_tps"] = summary(repeat(runs, decode))

    print("[2/4] engine: JSON-Schema-constrained vs unconstrained decode (streamed)", flush=True)
    schema, free = json.dumps(SCHEMA), {"max_new_tokens": n_tokens, "ignore_eos": True}
    raw["engine_stream_decode_tps"] = summary(
        repeat(runs, lambda _: stream_decode_tps(client, chatml(RECORD), **free))
    )
    raw["engine_json_stream_tps"] = summary(
        repeat(
            runs,
            lambda _: stream_decode_tps(
                client, chatml(RECORD), max_new_tokens=JSON_MAX_TOKENS, json_schema=schema
            ),
        )
    )
    json_tokens: list[int] = []

    def json_e2e(_: int) -> float:
        result, wall = generate(
            client, chatml(RECORD), max_new_tokens=JSON_MAX_TOKENS, json_schema=schema
        )
        json.loads(result["text"])  # the constrained output must parse
        json_tokens.append(content_tokens(result["meta_info"]))
        return json_tokens[-1] / wall

    raw["engine_json_tps"] = summary(repeat(runs, json_e2e))
    raw["engine_json_tokens"] = json_tokens[1:]
    measure_ttft(client, runs, raw)


def measure_ttft(client: httpx.Client, runs: int, raw: dict[str, Any]) -> None:
    print("[3/4] engine: time to first token, ~1,000-token prefix uncached vs cached", flush=True)
    doc = document()
    uncached: list[float] = []
    cached: list[float] = []
    meta: dict[str, Any] = {}
    for i in range(-1, runs):
        flush(client)
        prompts = [chatml(f"{doc}\n\nWhich harbour is named in fact {k}?") for k in (i + 2, i + 20)]
        _, times = stream(client, prompts[0], max_new_tokens=4)
        uncached.append(times[0])
        last, times = stream(client, prompts[1], max_new_tokens=4)  # same document, new question
        cached.append(times[0])
        meta = last["meta_info"]
    raw["ttft_uncached_s"] = summary(uncached[1:])
    raw["ttft_cached_s"] = summary(cached[1:])
    raw["ttft_prompt_tokens"] = meta["prompt_tokens"]
    raw["ttft_cached_tokens"] = meta["cached_tokens"]


# -- llama-cpp-python, called directly --------------------------------------------------


@contextmanager
def direct_llama() -> Iterator[Any]:
    import llama_cpp

    llm = llama_cpp.Llama(
        default_model_path(), n_ctx=2048, n_threads=THREADS, n_batch=512, verbose=False
    )
    try:
        yield llm
    finally:
        llm.close()


def measure_llama_cpp(runs: int, n_tokens: int, raw: dict[str, Any]) -> None:
    print("[4/4] llama-cpp-python directly (engine idle): decode and JSON", flush=True)
    with direct_llama() as llm:
        end_ids = {llm.token_eos(), *llm.tokenize(b"<|im_end|><|endoftext|>", False, True)}
        no_end = {token: -1e9 for token in end_ids}

        def decode(_: int) -> float:
            start = time.perf_counter()
            out = llm.create_completion(
                chatml(STORY), max_tokens=n_tokens, temperature=0.0, logit_bias=no_end
            )
            return out["usage"]["completion_tokens"] / (time.perf_counter() - start)

        raw["llama_cpp_decode_tps"] = summary(repeat(runs, decode))
        json_tokens: list[int] = []
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": RECORD}]
        response_format = {"type": "json_object", "schema": SCHEMA}

        def json_chat(_: int) -> float:
            start = time.perf_counter()
            out = llm.create_chat_completion(
                messages,
                response_format=response_format,
                temperature=0.0,
                max_tokens=JSON_MAX_TOKENS,
            )
            json_tokens.append(out["usage"]["completion_tokens"])
            return json_tokens[-1] / (time.perf_counter() - start)

        raw["llama_cpp_json_tps"] = summary(repeat(runs, json_chat))
        raw["llama_cpp_json_tokens"] = json_tokens[1:]


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


def machine() -> dict[str, Any]:
    import llama_cpp

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": THREADS,
        "python": platform.python_version(),
        "llama_cpp_python": llama_cpp.__version__,
        "model": os.path.basename(default_model_path()),
    }


def print_table(ratios: dict[str, float]) -> None:
    print(f"\n{'metric':<26} {'value':>8} {'target':>8}  result")
    for name, value in ratios.items():
        target = TARGETS[name]
        verdict = "pass" if target.met(value) else "FAIL"
        print(f"{name:<26} {value:>8.3f} {target.op + f' {target.value:g}':>8}  {verdict}")


def main(*, quick: bool, out_dir: str) -> int:
    runs, n_tokens = (3, 64) if quick else (5, 128)
    raw: dict[str, Any] = {"runs": runs, "max_new_tokens": n_tokens}
    print(f"sgflow bench engine: {runs} runs per figure, medians", flush=True)
    try:
        with engine_server() as client:
            print("engine ready", flush=True)
            measure_engine(client, runs, n_tokens, raw)
            measure_llama_cpp(runs, n_tokens, raw)  # the engine is up but idle
    except (RuntimeError, httpx.HTTPError, json.JSONDecodeError) as exc:
        print(f"bench engine failed: {exc}", file=sys.stderr)
        return 1
    ratios = ratios_of(raw)
    print_table(ratios)
    result = {
        "scenario": "engine",
        "ratios": {name: round(value, 4) for name, value in ratios.items()},
        "raw": raw,
        "targets": {name: {t.op: t.value} for name, t in TARGETS.items()},
        "machine": machine(),
    }
    path = Path(out_dir) / "engine.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0
