"""Contract tests of the Ollama, TGI, LMDeploy, TensorRT-LLM and MLC-LLM adapters.

None of those engines runs here: each test talks to a fake (``contract_engines.FakeEngine``)
that speaks one engine's wire format as its source does (engine_facts.md) and generates for
real on the embedded engine. Test ids name the engine and the version the facts were read at.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sgflow.adapters.detect import detect
from sgflow.execution import endpoint_for, execute
from sgflow.grammars.validation import validation_errors
from sgflow.programs import compile_program, load_program
from sgflow.programs.ir import ProgramIR
from sgflow.programs.model import Program
from tests.adapters.contract_engines import FakeEngine

pytestmark = pytest.mark.engine

LIBRARY = Path(__file__).parents[2] / "sgflow" / "programs" / "library"
VERSIONS = {"ollama": "v0.32.15", "tgi": "v3.3.7", "lmdeploy": "v0.16.0"}
VERSIONS.update({"trtllm": "trtllm-serve-2026", "mlc": "v0.20.0"})
KINDS = [pytest.param(k, id=f"contract_{k}_{v}_mocked") for k, v in VERSIONS.items()]
TEAM = "(payments|engineering|identity|product|support)"  # ticket-triage's `team` regex


@pytest.fixture(scope="module")
def fakes(engine_url: str) -> Iterator[dict[str, FakeEngine]]:
    found = {kind: FakeEngine(kind, engine_url) for kind in VERSIONS}
    yield found
    for fake in found.values():
        fake.close()


@pytest.fixture
def fake(request: pytest.FixtureRequest, fakes: dict[str, FakeEngine]) -> FakeEngine:
    chosen = fakes[request.param]
    chosen.reset()
    return chosen


def library(name: str) -> tuple[ProgramIR, dict[str, Any]]:
    path = LIBRARY / f"{name}.yaml"
    ir = compile_program(load_program(str(path)), base_dir=str(path.parent))
    # the contract is under test, not the speed of a shared 2-core CPU: no run timeout
    ir = dataclasses.replace(ir, timeout_s=3600)
    return ir, json.loads((LIBRARY / "samples" / f"{name}.json").read_text())


def inline(*steps: dict[str, Any]) -> ProgramIR:
    return compile_program(Program.model_validate({"program": "t", "steps": list(steps)}))


def assert_valid(ir: ProgramIR, result: Any, inputs: dict[str, Any]) -> None:
    assert result.ok, result.error
    if ir.output_schema is not None:
        assert validation_errors(result.output, ir.output_schema) == []
    for step in ir.iter_steps():
        c = step.gen.constraint if step.gen is not None else None
        schema = c.schema if c is not None and c.dynamic is None else inputs.get("schema")
        if c is not None and c.kind == "json_schema" and result.steps.get(step.id) is not None:
            assert validation_errors(result.steps[step.id], schema) == [], step.id


def bodies(fake: FakeEngine) -> list[dict[str, Any]]:
    return [b for _, b in fake.generations()]


@pytest.mark.parametrize("fake", KINDS, indirect=True)
def test_contract_mocked_detect_finds_the_kind_and_model(fake: FakeEngine) -> None:
    probe = detect(fake.url)
    assert (probe.kind, probe.model) == (fake.kind, fake.model)
    expected = {"ollama": "0.32.15", "tgi": "3.3.6-dev0", "trtllm": "1.2.1"}.get(fake.kind)
    assert probe.version == expected


# what each engine's requests for ticket-triage must look like on the wire
def _ollama_wire(fake: FakeEngine) -> None:
    sent = bodies(fake)
    assert all(b["raw"] is True and b["options"]["temperature"] == 0 for b in sent)
    assert {"type": "string", "pattern": f"^(?:{TEAM})$"} in [b.get("format") for b in sent]
    assert {"type": "string", "enum": ["low", "medium", "high"]} in [b.get("format") for b in sent]
    assert any(b.get("format", {}).get("type") == "object" for b in sent)


def _tgi_wire(fake: FakeEngine) -> None:
    params = [b["parameters"] for b in bodies(fake)]
    assert all(p["do_sample"] is False and "temperature" not in p for p in params)
    assert all("top_p" not in p for p in params)
    assert {"type": "regex", "value": TEAM} in [p.get("grammar") for p in params]
    assert any(p.get("grammar", {}).get("type") == "json" for p in params)
    assert any(p.get("decoder_input_details") for p in params)  # select scored from prefill
    assert [p for p, _ in fake.requests].count("/tokenize") == 2


def _lmdeploy_wire(fake: FakeEngine) -> None:
    sent = fake.generations()
    assert {p for p, _ in sent} == {"/v1/chat/completions"}
    assert all(isinstance(b["messages"], str) and "max_tokens" not in b for _, b in sent)
    assert all(b["max_completion_tokens"] > 0 for _, b in sent)
    formats = [b.get("response_format") for _, b in sent]
    assert {"type": "regex_schema", "regex_schema": TEAM} in formats
    assert any(f and f["type"] == "json_schema" and "schema" in f["json_schema"] for f in formats)


def _trtllm_wire(fake: FakeEngine) -> None:
    sent = bodies(fake)
    assert all(b["add_special_tokens"] is False for b in sent)  # the prompt is formatted
    formats = [b.get("response_format") for b in sent]
    assert {"type": "regex", "regex": TEAM} in formats
    assert any(f and f["type"] == "json" and isinstance(f["schema"], dict) for f in formats)


def _mlc_wire(fake: FakeEngine) -> None:
    formats = [b["response_format"] for b in bodies(fake) if "response_format" in b]
    assert formats and all(f["type"] == "json_object" for f in formats)
    assert all(isinstance(f["schema"], str) for f in formats)  # a JSON *string*
    schemas = [json.loads(f["schema"]) for f in formats]
    assert {"type": "string", "pattern": f"^(?:{TEAM})$"} in schemas


WIRE = {"ollama": _ollama_wire, "tgi": _tgi_wire, "lmdeploy": _lmdeploy_wire}
WIRE.update({"trtllm": _trtllm_wire, "mlc": _mlc_wire})


@pytest.mark.parametrize("fake", KINDS, indirect=True)
def test_contract_mocked_ticket_triage_runs_with_the_engines_own_fields(fake: FakeEngine) -> None:
    ir, inputs = library("ticket-triage")
    result = execute(ir, inputs, endpoint_for(fake.url))
    assert_valid(ir, result, inputs)
    WIRE[fake.kind](fake)
    gens = [t for t in result.trace if t.constraint not in ("select", "free")]
    assert gens and all(t.prompt_tokens > 0 for t in gens)  # TGI: the x-prompt-tokens header
    # the embedded engine reuses the shared prefix; only TRT-LLM and LMDeploy's chat say so
    reported = result.usage["cached_tokens"] > 0
    assert reported == (fake.kind in ("trtllm", "lmdeploy")), result.usage


@pytest.mark.parametrize("name", ["invoice-extract", "extract"])
@pytest.mark.parametrize("fake", KINDS, indirect=True)
def test_contract_mocked_library_program_runs_valid(fake: FakeEngine, name: str) -> None:
    ir, inputs = library(name)
    result = execute(ir, inputs, endpoint_for(fake.url))
    assert_valid(ir, result, inputs)
    assert fake.generations()


@pytest.mark.parametrize("fake", KINDS, indirect=True)
def test_contract_mocked_ebnf_runs_only_where_the_engine_has_it(fake: FakeEngine) -> None:
    ir, inputs = library("sql-generate")
    result = execute(ir, inputs, endpoint_for(fake.url))
    if fake.kind != "trtllm":
        assert not result.ok and result.error is not None
        assert result.error["code"] == "engine.unsupported"
        assert fake.generations() == []  # refused before any token was generated
        return
    assert_valid(ir, result, inputs)
    assert result.output["sql"].startswith("SELECT ")
    (sent,) = bodies(fake)
    assert sent["response_format"]["type"] == "ebnf" and "root" in sent["response_format"]["ebnf"]


STREAMED = (
    {"id": "line", "user": "Say one short sentence about the sea.", "gen": {"max_tokens": 24}},
    {"id": "code", "user": "Give a code.", "gen": {"regex": "[A-Z]{3}-[0-9]{3}", "max_tokens": 16}},
)


@pytest.mark.parametrize("fake", KINDS, indirect=True)
def test_contract_mocked_streamed_deltas_add_up_to_the_step_text(fake: FakeEngine) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    result = execute(inline(*STREAMED), {}, endpoint_for(fake.url), on_event=_append(events))
    assert result.ok, result.error
    for step in ("line", "code"):
        deltas = [d["text"] for k, d in events if k == "step.delta" and d["step"] == step]
        assert deltas and "".join(deltas) == result.steps[step], (step, deltas)
    assert result.steps["line"].strip()
    paths = [p for p, b in fake.generations() if b.get("stream") or p == "/generate_stream"]
    assert paths, "no generation went through the engine's streaming endpoint"


def _append(events: list[tuple[str, dict[str, Any]]]) -> Any:
    return lambda kind, data: events.append((kind, data))


ONE_STEP = {"id": "x", "user": "Say hi.", "gen": {"max_tokens": 8}}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("fake", KINDS, indirect=True)
def test_contract_mocked_engine_error_fails_the_run(fake: FakeEngine, stream: bool) -> None:
    fake.fail_next(500, "the fake engine broke")
    on_event = _append([]) if stream else None
    result = execute(inline(ONE_STEP), {}, endpoint_for(fake.url), on_event=on_event)
    assert not result.ok and result.error is not None
    assert result.error["code"] == "engine.error"
    assert "the fake engine broke" in result.error["message"]


def test_contract_tgi_v3_3_7_mocked_422_is_an_engine_error(fakes: dict[str, FakeEngine]) -> None:
    fake = fakes["tgi"]
    fake.reset()
    fake.fail_next(422, "Input validation error: `temperature` must be strictly positive")
    result = execute(inline(ONE_STEP), {}, endpoint_for(fake.url))
    assert result.error is not None and result.error["code"] == "engine.error"
    assert "strictly positive" in result.error["message"]


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("trtllm", "cancelled"), ("trtllm", "timeout"), ("lmdeploy", "abort"), ("lmdeploy", "error")]
    + [("mlc", "preempt"), ("ollama", "load")],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_contract_mocked_unfinished_generation_is_never_a_success(
    fakes: dict[str, FakeEngine], kind: str, reason: str, stream: bool
) -> None:
    fake = fakes[kind]
    fake.reset()
    fake.finish_as = reason
    on_event = _append([]) if stream else None
    result = execute(inline(ONE_STEP), {}, endpoint_for(fake.url), on_event=on_event)
    assert not result.ok and result.error is not None
    assert result.error["code"] == "engine.error"
    assert fake.generations()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_contract_tgi_v3_3_7_mocked_five_stop_strings_are_not_refused(
    fakes: dict[str, FakeEngine], stream: bool
) -> None:
    fake = fakes["tgi"]
    fake.reset()
    stops = ["###", "END", "Note:", "\n\n", "."]  # TGI takes 4; sgflow applies the fifth
    gen = {"max_tokens": 40, "stop": stops}
    program = inline({"id": "x", "user": "Write two sentences about rain.", "gen": gen})
    events: list[tuple[str, dict[str, Any]]] = []
    on_event = _append(events) if stream else None
    result = execute(program, {}, endpoint_for(fake.url), on_event=on_event)
    assert result.ok, result.error
    assert result.steps["x"] and not any(s in result.steps["x"] for s in stops)
    assert all(len(b["parameters"]["stop"]) == 4 for b in bodies(fake))
    if stream:  # the deltas stop where the text does, too
        assert "".join(d["text"] for k, d in events if k == "step.delta") == result.steps["x"]


# requests the real servers refuse, and how (status, a word of the error body)
REFUSED = [
    ("tgi", "/generate", {"inputs": "a", "parameters": {"temperature": 0}}, 422, "strictly"),
    ("tgi", "/generate", {"inputs": "a", "parameters": {"top_p": 1.0}}, 422, "top_p"),
    ("tgi", "/generate", {"inputs": "a", "parameters": {"stop": list("abcde")}}, 422, "up to 4"),
    ("tgi", "/generate", {"inputs": "a", "parameters": {"grammar": {"type": "json", "value": {"type": "string"}}}}, 422, "properties"),
    ("tgi", "/generate_stream", {"inputs": "a", "parameters": {"decoder_input_details": True}}, 422, "streaming"),
    ("trtllm", "/v1/completions", {"model": "m", "prompt": "a", "prompt_logprobs": 1}, 400, "Extra inputs"),
    ("trtllm", "/v1/completions", {"model": "m", "prompt": "a", "stream_options": {"include_usage": True}}, 400, "Stream options"),
    ("trtllm", "/v1/completions", {"model": "m", "prompt": "a", "response_format": {"type": "json"}}, 400, "schema is required"),
    ("mlc", "/v1/completions", {"prompt": "a", "response_format": {"type": "json_object", "schema": {}}}, 422, "valid string"),
    ("mlc", "/v1/completions", {"prompt": "a", "response_format": {"type": "regex"}}, 400, "response_format"),
    ("mlc", "/v1/completions", {"prompt": "a", "logprobs": 6}, 422, "less than or equal"),
    ("lmdeploy", "/v1/chat/completions", {"model": "smollm2-135m", "messages": "a", "response_format": {"type": "ebnf"}}, 400, "response_format"),
    ("lmdeploy", "/v1/chat/completions", {"model": "nope", "messages": "a"}, 404, "does not exist"),
    ("ollama", "/api/generate", {"model": "smollm2:135m", "prompt": "a", "raw": True, "system": "s"}, 400, "raw mode"),
    ("ollama", "/api/generate", {"model": "smollm2:135m", "prompt": "a", "raw": True, "format": "xml"}, 400, "invalid format"),
    ("ollama", "/api/generate", {"model": "nope", "prompt": "a", "raw": True}, 404, "not found"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "path", "body", "status", "word"),
    REFUSED,
    ids=[f"contract_{r[0]}_mocked_{i}" for i, r in enumerate(REFUSED)],
)
def test_contract_mocked_fake_refuses_what_the_engine_refuses(
    fakes: dict[str, FakeEngine], kind: str, path: str, body: Any, status: int, word: str
) -> None:
    res = requests.post(fakes[kind].url + path, json=body, timeout=30)
    assert res.status_code == status and word in res.text, res.text
    said = endpoint_for(fakes[kind].url).adapter.error_message(res.json())
    assert word in said
