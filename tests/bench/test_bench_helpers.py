"""The bench scenarios' pure helpers, with no engine: what the executor sends is what the
recording and capturing endpoints say it sends, the flushing endpoint flushes before every
request, the synthetic inputs are what they claim, and every scenario is listed."""

from __future__ import annotations

import importlib
import itertools
import json
from typing import Any

import httpx
import jsonschema
import pytest

from sgflow.bench import _common
from sgflow.bench._common import (
    PERSON_SCHEMA,
    FlushingEndpoint,
    PromptCapture,
    RecordingEndpoint,
    capture_prompts,
    extract_ir,
    extraction_inputs,
    median,
    person,
    person_text,
    ratio,
)
from sgflow.execution import execute
from sgflow.programs import compile_program
from sgflow.programs.model import Program

URL = "http://engine.invalid"


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.status_code = 200
        self._body = body

    def json(self) -> dict[str, Any]:
        return self._body


class FakeEngine:
    """Stands in for sglang's ``http_request``: keeps every ``/generate`` body and answers
    with the next of ``answers``."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, url: str, json: Any = None, **_: Any) -> _Response:
        if url.endswith("/get_model_info"):
            return _Response({"model_path": "fake.gguf"})
        assert url.endswith("/generate"), url
        self.bodies.append(json)
        meta = {
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "cached_tokens": 0,
            "finish_reason": {"type": "stop", "matched": 2},
        }
        return _Response({"text": self.answers.pop(0), "meta_info": meta})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    engine = FakeEngine([])
    monkeypatch.setattr("sglang.lang.backend.runtime_endpoint.http_request", engine)
    return engine


def prefix_ir() -> Any:
    from sgflow.bench.prefix import PROGRAM

    return compile_program(Program.model_validate(PROGRAM))


PREFIX_ANSWERS = ["Dunmore", "1936", "3", "45"]


def test_recorded_bodies_are_what_the_endpoint_sent(fake: FakeEngine) -> None:
    fake.answers = list(PREFIX_ANSWERS)
    endpoint = RecordingEndpoint(URL)
    result = execute(prefix_ir(), {"document": "Fact 1: a harbour."}, endpoint)
    assert result.ok, result.error
    calls = endpoint.take()
    assert [c.body for c in calls] == fake.bodies and len(calls) == 4
    assert [c.text for c in calls] == PREFIX_ANSWERS
    assert endpoint.calls == []  # take() starts afresh
    # each step's prompt extends the previous one: the prefix the cache can reuse
    texts = [c.body["text"] for c in calls]
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts))
    assert texts[0].count("Fact 1: a harbour.") == 1 and texts[0].startswith("<|im_start|>system")


def test_capture_gives_the_bodies_the_executor_sends(fake: FakeEngine) -> None:
    answer = json.dumps(person(3))
    inputs = extraction_inputs(4)[3]
    fake.answers = [answer]
    result = execute(extract_ir(), inputs, RecordingEndpoint(URL))
    assert result.ok and result.output == person(3)
    captured = capture_prompts(extract_ir(), inputs, answer)
    assert captured == fake.bodies
    assert json.loads(captured[0]["sampling_params"]["json_schema"]) == PERSON_SCHEMA
    assert inputs["text"] in captured[0]["text"]


def test_capture_answers_without_an_engine() -> None:
    endpoint = PromptCapture("ok")
    prog = {
        "program": "one",
        "inputs": {"type": "object", "properties": {}},
        "steps": [{"id": "a", "user": "Say ok.", "gen": {"max_tokens": 4}}],
    }
    result = execute(compile_program(Program.model_validate(prog)), {}, endpoint)
    assert result.ok and result.steps["a"] == "ok"
    assert endpoint.calls[0].body["sampling_params"]["max_new_tokens"] == 4


def test_capture_of_a_failing_run_raises() -> None:
    with pytest.raises(RuntimeError, match="capturing"):
        capture_prompts(extract_ir(), extraction_inputs(1)[0], "not json")


def test_flushing_endpoint_flushes_before_every_generate(fake: FakeEngine) -> None:
    events: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        events.append(request.url.path)
        return httpx.Response(400 if len(events) == 1 else 200)  # busy once: retried

    http = httpx.Client(base_url=URL, transport=httpx.MockTransport(handler))
    fake.answers = list(PREFIX_ANSWERS)
    real_call = fake.__call__

    def generate(url: str, json: Any = None, **kw: Any) -> _Response:
        events.append("/generate")
        return real_call(url, json, **kw)

    endpoint = FlushingEndpoint(URL, http=http)
    _common_http = "sglang.lang.backend.runtime_endpoint.http_request"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_common_http, generate)
        assert execute(prefix_ir(), {"document": "doc"}, endpoint).ok
    endpoint.close()
    once = ["/flush_cache", "/generate"]
    assert events == ["/flush_cache", *once, *once * 3]  # the first flush was retried
    assert endpoint.flushes == 4


def test_flush_cache_gives_up_on_an_engine_that_stays_busy() -> None:
    http = httpx.Client(base_url=URL, transport=httpx.MockTransport(lambda r: httpx.Response(400)))
    with pytest.raises(RuntimeError, match="busy"):
        _common.flush_cache(http, tries=2)


def test_extraction_inputs_state_their_records() -> None:
    records = [person(i) for i in range(90)]
    assert len({r["name"] for r in records}) == 90
    for i, item in enumerate(extraction_inputs(12, filler=2)):
        jsonschema.validate(person(i), item["schema"])
        for value in person(i).values():
            assert str(value) in item["text"]
    assert len(person_text(0, filler=3)) > len(person_text(0, filler=0))


def test_ratio_and_median() -> None:
    assert ratio(3.0, 1.5) == 2.0
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None
    assert median([]) is None and median([3.0, 1.0, 2.0]) == 2.0


def test_prefix_program_puts_the_document_in_the_first_step_only() -> None:
    from sgflow.bench.prefix import PROGRAM, summarize

    users = [step["user"] for step in PROGRAM["steps"]]
    assert "inputs.document" in users[0] and all("inputs" not in u for u in users[1:])
    runs = [
        {"seconds": 2.0, "prompt_tokens": 100, "cached_tokens": 90, "completion_tokens": 4},
        {"seconds": 4.0, "prompt_tokens": 100, "cached_tokens": 0, "completion_tokens": 4},
    ]
    s = summarize(runs)
    assert s["total_s"] == 6.0 and s["median_s"] == 3.0 and s["cached_ratio"] == 0.45


def test_constrained_schemas_are_enforceable() -> None:
    from sgflow.bench.constrained import SCHEMAS
    from sgflow.grammars import check
    from sgflow.grammars.spec import JsonSchema

    assert set(SCHEMAS) == {"nested", "enum", "arrays", "pattern", "keys"}
    for name, (_, schema) in SCHEMAS.items():
        assert check(JsonSchema(schema)) == [], name


@pytest.mark.parametrize("name", ["prefix", "constrained", "overhead", "batch", "load"])
def test_scenario_modules_have_run(name: str) -> None:
    module = importlib.import_module(f"sgflow.bench.{name}")
    assert callable(module.run)


def test_bench_help_lists_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    from sgflow.bench.suite import SCENARIOS
    from sgflow.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name, description in SCENARIOS.items():
        assert name in out and description in out
    assert "all" in out and "--quick" in out


def test_load_p99_is_the_nearest_rank() -> None:
    from sgflow.bench.load import p99

    assert p99([]) is None
    assert p99([0.5]) == 0.5
    values = [float(i) for i in range(1, 101)]  # 1..100
    assert p99(values) == 99.0
    assert p99([*values, 1000.0]) == 100.0  # one outlier in 101 is past the 99th percentile
