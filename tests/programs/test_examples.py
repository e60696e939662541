"""Every example program, end to end on the embedded engine with the real model; the
executor's guarantees (validation, repair, truncation, budgets) on real generations."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sgflow.execution import SgflowEndpoint, execute
from sgflow.programs import compile_program, load_program
from sgflow.programs.checker import check_program
from sgflow.programs.model import Program

pytestmark = pytest.mark.engine

LIBRARY = Path(__file__).parents[2] / "sgflow" / "programs" / "library"
EXAMPLES = sorted(p.stem for p in LIBRARY.glob("*.yaml"))


@pytest.fixture(scope="module")
def endpoint(engine_url: str) -> SgflowEndpoint:
    return SgflowEndpoint(engine_url)


def run_example(name: str, endpoint: SgflowEndpoint) -> Any:
    path = LIBRARY / f"{name}.yaml"
    ir = compile_program(load_program(str(path)), base_dir=str(path.parent))
    inputs = json.loads((LIBRARY / "samples" / f"{name}.json").read_text())
    return ir, execute(ir, inputs, endpoint)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_and_its_output_is_schema_valid(name: str, endpoint: SgflowEndpoint) -> None:
    ir, result = run_example(name, endpoint)
    assert result.ok, result.error
    if ir.output_schema is not None:
        jsonschema.validate(result.output, ir.output_schema)
    for step in ir.iter_steps():
        if (
            step.gen is not None
            and step.gen.constraint.schema is not None
            and result.steps.get(step.id)
        ):
            jsonschema.validate(result.steps[step.id], step.gen.constraint.schema)
    assert all(t.status in ("ok", "skipped") for t in result.trace)


def test_extract_follows_the_callers_schema(endpoint: SgflowEndpoint) -> None:
    _, result = run_example("extract", endpoint)
    schema = json.loads((LIBRARY / "samples" / "extract.json").read_text())["schema"]
    jsonschema.validate(result.output, schema)
    assert result.output["founded"] == 2009


def test_cached_tokens_grow_step_by_step(endpoint: SgflowEndpoint) -> None:
    _, result = run_example("ticket-triage", endpoint)
    gens = [t for t in result.trace if t.prompt_tokens]
    assert len(gens) >= 2
    cached = [t.cached_tokens for t in gens]
    assert cached == sorted(cached) and cached[-1] > cached[0], cached
    # each step reuses everything the step before it was prompted with (the prefix is shared
    # byte for byte); only its own answer and the new user turn are computed
    for before, after in itertools.pairwise(gens):
        assert after.cached_tokens >= before.prompt_tokens, [
            (t.step, t.prompt_tokens, t.cached_tokens) for t in gens
        ]


def prog(steps: list[dict[str, Any]], **extra: Any) -> Program:
    data = {"program": "t", "steps": steps, **extra}
    errors = check_program(data)
    assert not errors, errors
    return Program.model_validate(data)


def test_a_keyword_the_grammar_ignores_is_caught_and_fails_loudly(endpoint: SgflowEndpoint) -> None:
    # multipleOf 7 on a number in [70, 71]: no value satisfies it, the grammar cannot know
    schema = {
        "type": "object",
        "required": ["n"],
        "additionalProperties": False,
        "properties": {"n": {"type": "integer", "minimum": 70, "maximum": 71, "multipleOf": 10}},
    }
    p = prog(
        [{"id": "x", "user": "Give n as JSON.", "gen": {"json_schema": schema, "max_tokens": 20}}],
        policy={"on_invalid": "repair", "max_attempts": 2},
    )
    result = execute(compile_program(p), {}, endpoint)
    if result.ok:  # 70 is a multiple of 10: a valid answer exists and must validate
        assert result.steps["x"]["n"] == 70
    else:
        assert result.error is not None and result.error["code"] == "output.invalid"
        assert result.error["details"][0]["pointer"] == "/n"
        assert result.trace[-1].attempts == 2


def test_unsatisfiable_post_check_fails_after_max_attempts(endpoint: SgflowEndpoint) -> None:
    schema = {
        "type": "array",
        "items": {"enum": ["a", "b"]},
        "minItems": 3,
        "maxItems": 3,
        "uniqueItems": True,
    }
    p = prog(
        [
            {
                "id": "x",
                "user": "List three letters as JSON.",
                "gen": {"json_schema": schema, "max_tokens": 30},
            }
        ],
        policy={"on_invalid": "repair", "max_attempts": 2},
    )
    result = execute(compile_program(p), {}, endpoint)
    assert not result.ok
    assert result.error is not None and result.error["code"] == "output.invalid"
    assert "non-unique" in result.error["details"][0]["message"]
    assert result.output is None


def test_truncated_json_is_an_error_not_a_result(endpoint: SgflowEndpoint) -> None:
    schema = {"type": "object", "required": ["story"], "properties": {"story": {"type": "string"}}}
    p = prog(
        [
            {
                "id": "x",
                "user": "Write a long story as JSON.",
                "gen": {"json_schema": schema, "max_tokens": 8},
            }
        ],
        policy={"on_invalid": "fail"},
    )
    result = execute(compile_program(p), {}, endpoint)
    assert not result.ok
    assert result.error is not None and result.error["code"] == "output.truncated"


def test_token_budget_stops_the_run(endpoint: SgflowEndpoint) -> None:
    p = prog(
        [
            {
                "id": "a",
                "user": "Write a very long story about a dragon.",
                "gen": {"max_tokens": 40},
            },
            {"id": "b", "user": "Another.", "gen": {"max_tokens": 40}},
        ],
        policy={"token_budget": 100},
    )
    p.policy.token_budget = 30  # the checker refuses a budget below the steps' maximum
    result = execute(compile_program(p), {}, endpoint)
    assert result.error is not None and result.error["code"] == "limit.token_budget"
    assert result.error["step"] == "a"


def test_inputs_are_validated_before_anything_runs(endpoint: SgflowEndpoint) -> None:
    path = LIBRARY / "ticket-triage.yaml"
    ir = compile_program(load_program(str(path)), base_dir=str(path.parent))
    result = execute(ir, {"ticket": 5}, endpoint)
    assert not result.ok and result.error is not None
    assert result.error["code"] == "input.invalid"
    assert result.error["details"][0]["pointer"] == "/ticket"
    assert result.trace == []


def test_cli_run_with_trace(engine_url: str) -> None:
    path = LIBRARY / "sql-generate.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sgflow.cli",
            "run",
            str(path),
            "--engine",
            engine_url,
            "--trace",
            "--inputs",
            str(LIBRARY / "samples" / "sql-generate.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sql"].startswith("SELECT ")
    assert "cached" in proc.stderr and "sql" in proc.stderr


def test_cli_batch_jsonl(engine_url: str, tmp_path: Path) -> None:
    rows = [
        {"table": "t(a integer, b text)", "question": f"Get rows where a is {i}."} for i in range(3)
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sgflow.cli",
            "run",
            str(LIBRARY / "sql-generate.yaml"),
            "--engine",
            engine_url,
            "--inputs-jsonl",
            str(src),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in results] == [1, 2, 3]
    assert all(r["ok"] and r["output"]["sql"].startswith("SELECT") for r in results)


def test_resume_skips_checkpointed_steps(endpoint: SgflowEndpoint) -> None:
    path = LIBRARY / "ticket-triage.yaml"
    ir = compile_program(load_program(str(path)), base_dir=str(path.parent))
    inputs = json.loads((LIBRARY / "samples" / "ticket-triage.json").read_text())
    events: list[dict[str, Any]] = []
    first = execute(
        ir,
        inputs,
        endpoint,
        on_event=lambda k, d: events.append(d) if k == "step.finished" else None,
    )
    assert first.ok, first.error
    saved = {
        e["step"]: {"value": e["value"], "text": e["text"], "skipped": e["skipped"]}
        for e in events
        if e["step"] in ("category", "urgency")
    }
    # pretend the first attempt died here: the category checkpoint says "account"
    saved["category"]["value"] = saved["category"]["text"] = "account"
    second = execute(ir, inputs, endpoint, completed=saved)
    assert second.ok, second.error
    assert [t.status for t in second.trace][:2] == ["resumed", "resumed"]
    assert [t.step for t in second.trace if t.status == "ok"] == ["team", "reply"]
    assert second.output["category"] == "account"  # taken from the checkpoint, not recomputed
    assert second.trace[2].cached_tokens > 0


class _Params(SgflowEndpoint):
    """Records the sampling parameters and prompt of every generation."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def generate(self, s: Any, sampling_params: Any) -> Any:
        self.calls.append((s.text_, dict(sampling_params.to_srt_kwargs())))
        return super().generate(s, sampling_params)


def test_after_a_truncated_attempt_the_next_starts_afresh_sampled_and_penalised(
    engine_url: str,
) -> None:
    schema = {"type": "object", "required": ["story"], "properties": {"story": {"type": "string"}}}
    step = {"id": "x", "user": "Write a long story as JSON.", "gen": {"json_schema": schema}}
    step["gen"]["max_tokens"] = 8
    p = prog([step], policy={"on_invalid": "repair", "max_attempts": 2})
    endpoint = _Params(engine_url)
    result = execute(compile_program(p), {}, endpoint)
    assert result.error is not None and result.error["code"] == "output.truncated"
    (first_text, first), (second_text, second) = endpoint.calls
    assert first["temperature"] == 0 and not first.get("frequency_penalty")
    assert second["temperature"] == 0.7 and second["frequency_penalty"] == 0.5
    assert second_text == first_text  # the same prefix: the cut-off answer is not shown again
    assert "invalid" not in second_text
