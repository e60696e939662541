"""The static checker: every error kind, with its code, JSON pointer, line and hint."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sgflow.programs import ProgramLimits, parse_program
from sgflow.programs.checker import check_program

LIBRARY = Path(__file__).parents[2] / "sgflow" / "programs" / "library"

BASE: dict[str, Any] = {
    "program": "demo",
    "inputs": {
        "type": "object",
        "properties": {"doc": {"type": "string"}},
        "required": ["doc"],
        "additionalProperties": False,
    },
    "steps": [
        {"id": "kind", "user": "Doc: {{ inputs.doc }}", "select": ["a", "b"]},
        {"id": "value", "user": "Extract.", "gen": {"json_schema": {"type": "object"}}},
    ],
}


def with_(path: str, value: Any) -> dict[str, Any]:
    """BASE with the value at a slash path replaced (or added); ``...`` deletes it."""
    prog = copy.deepcopy(BASE)
    parts = path.strip("/").split("/")
    node: Any = prog
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return prog


def step(**fields: Any) -> dict[str, Any]:
    return {"id": "extra", "user": "Go.", **fields}


def add_step(*steps: dict[str, Any]) -> dict[str, Any]:
    prog = copy.deepcopy(BASE)
    prog["steps"].extend(steps)
    return prog


CASES: list[tuple[str, Any, str, str]] = [
    # (name, program, code, pointer)
    ("not-a-mapping", [1, 2], "program.not_object", ""),
    ("unknown-top-field", with_("/stepz", []), "program.unknown_field", "/stepz"),
    (
        "unknown-step-field",
        with_("/steps/0/prompt", "x"),
        "program.unknown_field",
        "/steps/0/prompt",
    ),
    ("missing-steps", with_("/steps", ...), "program.missing_field", "/steps"),
    ("wrong-type", with_("/steps/0/select", 5), "program.wrong_type", "/steps/0/select/list[str]"),
    ("bad-name", with_("/program", "Has Spaces"), "program.invalid_value", "/program"),
    ("bad-step-id", with_("/steps/0/id", "1st"), "program.invalid_value", "/steps/0/id"),
    (
        "fork-needs-source",
        add_step({"id": "f", "fork": {"steps": [step()]}}),
        "program.invalid_value",
        "/steps/2/fork",
    ),
    ("duplicate-id", add_step(step(id="kind", gen={})), "step.duplicate_id", "/steps/2/id"),
    ("reserved-id", add_step(step(id="inputs", gen={})), "step.reserved_id", "/steps/2/id"),
    ("two-actions", add_step(step(gen={}, select=["x"])), "step.multiple_actions", "/steps/2"),
    ("empty-step", add_step({"id": "nothing"}), "step.empty", "/steps/2"),
    (
        "think-without-answer",
        add_step(step(think={})),
        "step.think_without_answer",
        "/steps/2/think",
    ),
    (
        "template-syntax",
        add_step(step(user="{{ inputs.doc ", gen={})),
        "template.syntax",
        "/steps/2/user",
    ),
    (
        "unknown-name",
        add_step(step(user="{{ documnt }}", gen={})),
        "template.unknown_name",
        "/steps/2/user",
    ),
    (
        "unknown-input",
        add_step(step(user="{{ inputs.dok }}", gen={})),
        "template.unknown_input",
        "/steps/2/user",
    ),
    (
        "undefined-ref",
        add_step(step(user="{{ steps.nope }}", gen={})),
        "program.undefined_ref",
        "/steps/2/user",
    ),
    (
        "forward-ref",
        with_("/steps/0/user", "{{ steps.value }}"),
        "program.forward_ref",
        "/steps/0/user",
    ),
    (
        "bad-condition",
        add_step(step(gen={}, **{"if": "steps.kind =="})),
        "condition.syntax",
        "/steps/2/if",
    ),
    (
        "bad-fork-over",
        add_step({"id": "f", "fork": {"over": "steps.value[", "steps": [step()]}}),
        "fork.over_syntax",
        "/steps/2/fork/over",
    ),
    (
        "fork-too-wide",
        add_step({"id": "f", "fork": {"n": 99, "steps": [step(gen={})]}}),
        "limit.fork_width",
        "/steps/2/fork/n",
    ),
    (
        "fork-too-deep",
        add_step(
            {
                "id": "f",
                "fork": {
                    "n": 2,
                    "steps": [
                        {
                            "id": "g",
                            "fork": {
                                "n": 2,
                                "steps": [{"id": "h", "fork": {"n": 2, "steps": [step(gen={})]}}],
                            },
                        }
                    ],
                },
            }
        ),
        "limit.fork_depth",
        "/steps/2/fork/steps/0/fork/steps/0/fork",
    ),
    (
        "two-constraints",
        add_step(step(gen={"regex": "a", "ebnf": 'root ::= "a"'})),
        "grammar.conflict",
        "/steps/2/gen",
    ),
    (
        "max-tokens",
        add_step(step(gen={"max_tokens": 100_000})),
        "limit.max_tokens",
        "/steps/2/gen/max_tokens",
    ),
    (
        "empty-stop",
        add_step(step(gen={"stop": [""]})),
        "program.invalid_value",
        "/steps/2/gen/stop",
    ),
    (
        "duplicate-choices",
        add_step(step(select=["x", "x"])),
        "grammar.invalid_choices",
        "/steps/2/select",
    ),
    (
        "empty-choice",
        add_step(step(gen={"choices": ["x", ""]})),
        "grammar.invalid_choices",
        "/steps/2/gen/choices",
    ),
    (
        "too-many-choices",
        add_step(step(select=[f"c{i}" for i in range(300)])),
        "limit.choices",
        "/steps/2/select",
    ),
    (
        "bad-regex",
        add_step(step(gen={"regex": "(unclosed"})),
        "grammar.invalid_regex",
        "/steps/2/gen/regex",
    ),
    (
        "bad-ebnf",
        add_step(step(gen={"ebnf": "root ::= missing"})),
        "grammar.invalid_ebnf",
        "/steps/2/gen/ebnf",
    ),
    (
        "unknown-grammar",
        add_step(step(gen={"grammar": "no-such-grammar"})),
        "grammar.unknown_name",
        "/steps/2/gen/grammar",
    ),
    (
        "unresolved-ref",
        add_step(step(gen={"json_schema": {"$ref": "grammars/library/nope.schema.json"}})),
        "grammar.ref_unresolved",
        "/steps/2/gen/json_schema/$ref",
    ),
    (
        "invalid-schema",
        add_step(step(gen={"json_schema": {"type": "objekt"}})),
        "grammar.invalid_schema",
        "/steps/2/gen/json_schema/type",
    ),
    ("inputs-invalid-schema", with_("/inputs/type", 7), "inputs.invalid_schema", "/inputs/type"),
    (
        "output-invalid-schema",
        with_("/output", {"value": "x", "schema": {"minLength": "3"}}),
        "output.invalid_schema",
        "/output/schema/minLength",
    ),
    (
        "output-unknown-ref",
        with_("/output", {"value": {"a": "{{ steps.zzz }}"}}),
        "program.undefined_ref",
        "/output/value/a",
    ),
    (
        "schema-from-syntax",
        add_step(step(gen={"json_schema_from": "inputs.["})),
        "gen.schema_from_syntax",
        "/steps/2/gen/json_schema_from",
    ),
    (
        "token-budget",
        with_("/policy", {"token_budget": 10}),
        "limit.token_budget",
        "/policy/token_budget",
    ),
]


@pytest.mark.parametrize(("name", "program", "code", "pointer"), CASES, ids=[c[0] for c in CASES])
def test_each_error_kind(name: str, program: Any, code: str, pointer: str) -> None:
    errors = check_program(program)
    found = [(e.code, e.pointer) for e in errors]
    assert (code, pointer) in found, found
    error = next(e for e in errors if e.code == code)
    assert error.message


def test_at_least_30_distinct_error_kinds_are_covered() -> None:
    assert len({c[2] for c in CASES}) >= 30


def test_limits_on_steps_template_size_and_total_tokens() -> None:
    many = copy.deepcopy(BASE)
    many["steps"] = [{"id": f"s{i}", "user": "x", "gen": {"max_tokens": 8}} for i in range(70)]
    assert "limit.steps" in {e.code for e in check_program(many)}
    big = add_step(step(user="x" * 30_000, gen={}))
    assert "limit.template_size" in {e.code for e in check_program(big)}
    wide = add_step({"id": "f", "fork": {"n": 30, "steps": [step(gen={"max_tokens": 4000})]}})
    assert "limit.total_tokens" in {e.code for e in check_program(wide)}
    strict = ProgramLimits(max_steps=2)
    assert "limit.steps" in {e.code for e in check_program(add_step(step(gen={})), strict)}


def test_yaml_errors_carry_file_and_line() -> None:
    text = yaml.safe_dump(add_step(step(user="{{ steps.nope }}", gen={})), sort_keys=False)
    prog, errors = parse_program(text, file="demo.yaml")
    assert prog is None
    err = next(e for e in errors if e.code == "program.undefined_ref")
    assert err.file == "demo.yaml"
    lines = text.splitlines()
    assert err.line is not None and "steps.nope" in lines[err.line - 1]
    assert "demo.yaml:" in str(err) and "hint:" in str(err)


def test_syntax_error_is_reported_with_its_line() -> None:
    prog, errors = parse_program("program: x\nsteps: [\n  - a: b\n", file="broken.yaml")
    assert prog is None
    assert errors[0].code == "program.syntax"
    assert errors[0].line is not None


def test_all_errors_are_reported_not_only_the_first() -> None:
    prog = add_step(step(user="{{ steps.nope }} {{ whatever }}", gen={"regex": "(x"}))
    codes = {e.code for e in check_program(prog)}
    assert {"program.undefined_ref", "template.unknown_name", "grammar.invalid_regex"} <= codes


@pytest.mark.parametrize("path", sorted(LIBRARY.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_program_is_accepted(path: Path) -> None:
    prog, errors = parse_program(path.read_text(), file=str(path))
    assert not errors, "\n".join(str(e) for e in errors)
    assert prog is not None
    sample = json.loads((LIBRARY / "samples" / f"{path.stem}.json").read_text())
    assert isinstance(sample, dict)


def test_published_program_schema_is_current() -> None:
    from sgflow.programs.schema import SCHEMA_PATH, program_schema_text

    assert SCHEMA_PATH.read_text() == program_schema_text(), "run `sgflow schema --write`"


def test_published_schema_validates_the_examples() -> None:
    import jsonschema

    from sgflow.programs.schema import program_schema

    schema = program_schema()
    for path in LIBRARY.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
