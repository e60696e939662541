"""Helpers shared by the ``prefix``, ``constrained``, ``overhead`` and ``batch`` scenarios.

- endpoints for the executor that record what it sends (:class:`RecordingEndpoint`), flush
  the engine's prefix cache before every ``/generate`` (:class:`FlushingEndpoint`), or
  answer without an engine so that the exact prompts of many runs can be known in advance
  (:class:`PromptCapture`);
- :func:`wire_body`: the ``/generate`` body ``RuntimeEndpoint.generate`` sends, so that a
  recorded call can be replayed raw;
- synthetic extraction inputs (:func:`extraction_inputs`): short texts about people whose
  true record is known, and one small schema;
- a :class:`~sgflow.cluster.Cluster` of its own for the service scenarios
  (:func:`bench_cluster`), with an embedded Valkey in a temporary folder.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
from sglang.global_config import global_config
from sglang.lang.backend.base_backend import BaseBackend
from sglang.lang.chat_template import get_chat_template

from sgflow.execution import SgflowEndpoint, execute
from sgflow.execution.sglang_backend import _route_ebnf
from sgflow.programs import compile_program
from sgflow.programs.ir import ProgramIR
from sgflow.programs.model import Program

__all__ = [
    "PERSON_SCHEMA",
    "FlushingEndpoint",
    "GenerateCall",
    "PromptCapture",
    "RecordingEndpoint",
    "bench_cluster",
    "capture_prompts",
    "extraction_inputs",
    "flush_cache",
    "median",
    "person",
    "person_text",
    "ratio",
    "raw_generate",
    "wire_body",
]

_LOGPROB_ITEMS = [
    "return_logprob",
    "logprob_start_len",
    "top_logprobs_num",
    "return_text_in_logprobs",
]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the divisor is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# -- what the executor sends ---------------------------------------------------------------


def wire_body(text: str, sampling_params: Any) -> dict[str, Any]:
    """The JSON body of the ``/generate`` call ``RuntimeEndpoint.generate`` makes for a state
    whose text is ``text`` (sglang 0.4.10's code, in the same order)."""
    body: dict[str, Any] = {
        "text": text,
        "sampling_params": {
            "skip_special_tokens": global_config.skip_special_tokens_in_output,
            "spaces_between_special_tokens": global_config.spaces_between_special_tokens_in_out,
            **sampling_params.to_srt_kwargs(),
        },
    }
    for item in _LOGPROB_ITEMS:
        value = getattr(sampling_params, item, None)
        if value is not None:
            body[item] = value
    return body


@dataclass
class GenerateCall:
    body: dict[str, Any]
    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class RecordingEndpoint(SgflowEndpoint):
    """An :class:`SgflowEndpoint` that keeps the body, answer and ``meta_info`` of every
    ``/generate`` it makes (``calls``; :meth:`take` hands them over and starts afresh)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.calls: list[GenerateCall] = []

    def generate(self, s: Any, sampling_params: Any) -> Any:
        text = s.text_
        answer, meta = super().generate(s, sampling_params)
        self.calls.append(GenerateCall(wire_body(text, sampling_params), answer, meta))
        return answer, meta

    def take(self) -> list[GenerateCall]:
        calls, self.calls = self.calls, []
        return calls


def flush_cache(client: httpx.Client, *, tries: int = 100) -> None:
    """``POST /flush_cache``, retried while the engine answers 400 (requests running)."""
    for _ in range(tries):
        if client.post("/flush_cache").status_code == 200:
            return
        time.sleep(0.1)
    raise RuntimeError("/flush_cache kept answering 400 (engine busy)")


class FlushingEndpoint(SgflowEndpoint):
    """An :class:`SgflowEndpoint` that empties the engine's prefix cache before every
    request that computes (``/generate``, its streaming form, ``select``, ``cache_prefix``):
    the baseline of the prefix scenario. ``flushes`` counts them, ``flush_s`` is the time
    they took (to leave out of what is measured)."""

    def __init__(self, base_url: str, *, http: httpx.Client | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._http = http or httpx.Client(base_url=base_url, timeout=60)
        self.flushes = 0
        self.flush_s = 0.0

    def _flush(self) -> None:
        start = time.perf_counter()
        flush_cache(self._http)
        self.flush_s += time.perf_counter() - start
        self.flushes += 1

    def generate(self, s: Any, sampling_params: Any) -> Any:
        self._flush()
        return super().generate(s, sampling_params)

    def generate_stream(self, s: Any, sampling_params: Any) -> Any:
        self._flush()
        return super().generate_stream(s, sampling_params)

    def select(self, *args: Any, **kwargs: Any) -> Any:
        self._flush()
        return super().select(*args, **kwargs)

    def cache_prefix(self, prefix_str: str) -> None:
        self._flush()
        super().cache_prefix(prefix_str)

    def commit_lazy_operations(self, s: Any) -> None:
        self._flush()
        super().commit_lazy_operations(s)

    def close(self) -> None:
        self._http.close()


class PromptCapture(SgflowEndpoint):
    """An endpoint with no engine: every ``/generate`` it is asked for is recorded (its
    :func:`wire_body`) and answered with ``answer`` (a finished generation, as if the
    model had written it). Running a program on it gives the exact requests the executor
    would send, provided ``answer`` is what the model answers (for a one-step program,
    only the first request matters)."""

    def __init__(self, answer: str = "", *, chat_template_name: str = "chatml") -> None:
        BaseBackend.__init__(self)  # not RuntimeEndpoint's: it asks a server for its model
        self.support_concate_and_append = True
        self.base_url = "capture://"
        self.api_key = None
        self.verify = None
        self.model_info = {"model_path": "capture"}
        self.chat_template = get_chat_template(chat_template_name)
        self._init_sinks()
        self.answer = answer
        self.calls: list[GenerateCall] = []

    def generate(self, s: Any, sampling_params: Any) -> Any:
        _route_ebnf(sampling_params)
        self._handle_dtype_to_regex(sampling_params)
        meta = {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cached_tokens": 0,
            "finish_reason": {"type": "stop", "matched": None},
        }
        self.calls.append(GenerateCall(wire_body(s.text_, sampling_params), self.answer, meta))
        return self.answer, meta


def capture_prompts(ir: ProgramIR, inputs: dict[str, Any], answer: str) -> list[dict[str, Any]]:
    """The ``/generate`` bodies the executor sends for one run of ``ir`` on ``inputs``
    when the model answers ``answer``. Raises if the run fails."""
    endpoint = PromptCapture(answer)
    result = execute(ir, inputs, endpoint)
    if not result.ok:
        raise RuntimeError(f"capturing the prompts failed: {result.error}")
    return [call.body for call in endpoint.calls]


def raw_generate(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """One raw ``POST /generate``; its ``meta_info``."""
    response = client.post("/generate", json=body)
    response.raise_for_status()
    meta: dict[str, Any] = response.json()["meta_info"]
    return meta


# -- extraction inputs ---------------------------------------------------------------------

_FIRST = ["Maria", "John", "Aiko", "Pavel", "Fatima", "Liam", "Sofia", "Omar", "Ingrid", "Kwame"]
_LAST = ["Lopez", "Baker", "Tanaka", "Novak", "Haddad", "Walsh", "Rossi", "Farouk", "Berg"]
_CITIES = ["Ardmore", "Belcastle", "Corrin", "Dunmore", "Eskdale", "Fairhaven", "Glenrock"]
_JOBS = ["nurse", "teacher", "welder", "pilot", "baker", "chemist", "carpenter", "librarian"]
_FILLER = [
    "The weather that spring was unusually dry, and the river ran low for weeks.",
    "A new bakery opened on the corner of the market square in the same month.",
    "The local council debated the bus timetable for most of the evening.",
    "Several neighbours planted apple trees along the old railway path.",
    "The library extended its opening hours to include Sunday afternoons.",
    "A storm in the autumn brought down two power lines near the harbour.",
]

_TEXT = {"type": "string", "maxLength": 40}
PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": _TEXT,
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": _TEXT,
        "job": _TEXT,
        # bounded: an unbounded integer lets a greedy near-tie run on in digits to max_tokens
        "since": {"type": "integer", "minimum": 1900, "maximum": 2100},
    },
    "required": ["name", "age", "city", "job", "since"],
    "additionalProperties": False,
}


def person(i: int) -> dict[str, Any]:
    """The true record behind input ``i`` (deterministic, distinct for i < 90)."""
    return {
        "name": f"{_FIRST[i % len(_FIRST)]} {_LAST[(i // len(_FIRST)) % len(_LAST)]}",
        "age": 21 + (7 * i) % 50,
        "city": _CITIES[(3 * i) % len(_CITIES)],
        "job": _JOBS[(5 * i) % len(_JOBS)],
        "since": 1990 + (11 * i) % 33,
    }


def person_text(i: int, filler: int = 1) -> str:
    """A short text stating ``person(i)``, padded with ``filler`` unrelated sentences."""
    p = person(i)
    pad = " ".join(_FILLER[(i + k) % len(_FILLER)] for k in range(filler))
    return (
        f"Note {i + 1}. {p['name']} is {p['age']} years old and lives in {p['city']}. "
        f"{p['name'].split()[0]} has worked as a {p['job']} since {p['since']}. {pad}"
    ).strip()


def extraction_inputs(n: int, *, filler: int = 1) -> list[dict[str, Any]]:
    """``n`` inputs of the library's ``extract`` program: ``{"schema", "text"}``."""
    return [{"schema": PERSON_SCHEMA, "text": person_text(i, filler)} for i in range(n)]


def extract_ir() -> ProgramIR:
    """The library's ``extract`` program (the one behind ``POST /v1/extract``), compiled."""
    from sgflow.service.routes.extract import extract_program

    return compile_program(Program.model_validate(extract_program()))


# -- a cluster of the bench's own ------------------------------------------------------------


@contextmanager
def bench_cluster(name: str, **config: Any) -> Iterator[Any]:
    """A :class:`~sgflow.cluster.Cluster` (``config``: :class:`ClusterConfig` fields) with
    its own data folder and key prefix. Redis: ``$SGFLOW_BENCH_REDIS_URL`` if set (keys
    under the prefix are deleted afterwards), else an embedded Valkey."""
    from sgflow.cluster import Cluster, ClusterConfig

    redis_url = os.environ.get("SGFLOW_BENCH_REDIS_URL") or None
    prefix = f"sgflow-bench-{name}-{os.getpid()}:"
    with TemporaryDirectory(prefix=f"sgflow-bench-{name}-") as tmp:
        cfg = ClusterConfig(redis_url=redis_url, prefix=prefix, data_dir=Path(tmp), **config)
        try:
            with Cluster(cfg) as cluster:
                yield cluster
        finally:
            if redis_url:
                _delete_prefix(redis_url, prefix)


def _delete_prefix(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        batch = list(client.scan_iter(match=f"{prefix}*", count=500))
        for i in range(0, len(batch), 500):
            client.delete(*batch[i : i + 500])
    finally:
        client.close()
