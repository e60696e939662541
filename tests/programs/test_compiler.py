"""The compiler's output (the IR), tested as data: deterministic, resolved, cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sgflow.execution.executor import to_sgl_function
from sgflow.execution.sglang_backend import _route_ebnf, ebnf_regex
from sgflow.programs import compile_program, load_program

LIBRARY = Path(__file__).parents[2] / "sgflow" / "programs" / "library"


def compiled(name: str):  # type: ignore[no-untyped-def]
    path = LIBRARY / f"{name}.yaml"
    return compile_program(load_program(str(path)), base_dir=str(path.parent))


def test_invoice_program_compiles_to_the_expected_ir() -> None:
    ir = compiled("invoice-extract")
    assert [s.id for s in ir.steps] == ["kind", "fields", "due", "checks"]
    kind, fields, due, checks = ir.steps
    assert kind.select == ("invoice", "receipt", "contract", "other")
    assert kind.gen is None
    assert fields.condition == "steps.kind in ['invoice', 'receipt']"
    assert fields.gen is not None and fields.gen.constraint.kind == "json_schema"
    schema = fields.gen.constraint.schema
    assert schema is not None and "line_items" in schema["properties"]  # $ref inlined
    assert json.loads(fields.gen.constraint.source or "") == schema
    assert due.gen is not None and due.gen.constraint.kind == "regex"
    assert due.gen.constraint.origin == "grammar:iso-date"
    assert checks.fork is not None and checks.fork.over == "steps.fields.line_items"
    assert checks.fork.var == "item"
    assert checks.fork.steps[0].select == ("yes", "no")
    assert ir.output_schema is not None and "$ref" not in json.dumps(ir.output_schema)
    assert (ir.on_invalid, ir.max_attempts) == ("repair", 3)


def test_choices_become_an_escaped_regex() -> None:
    ir = compiled("ticket-triage")
    team = next(s for s in ir.steps if s.id == "team")
    assert team.gen is not None
    assert team.gen.constraint.kind == "regex"
    assert team.gen.constraint.source == "(payments|engineering|identity|product|support)"


def test_sql_program_uses_ebnf() -> None:
    ir = compiled("sql-generate")
    assert ir.steps[0].gen is not None and ir.steps[0].gen.constraint.kind == "ebnf"


def test_compilation_is_deterministic_and_cached() -> None:
    a = compiled("resume-parse")
    b = compiled("resume-parse")
    assert a is b  # cache hit by content hash
    assert a.to_json() == b.to_json()
    assert len(a.content_hash) == 64
    other = compiled("ticket-triage")
    assert other.content_hash != a.content_hash


@pytest.mark.parametrize("name", sorted(p.stem for p in LIBRARY.glob("*.yaml")))
def test_every_example_becomes_an_sgl_function(name: str) -> None:
    fn = to_sgl_function(compiled(name))
    assert fn.arg_names == ["inputs", "run"]
    assert fn.sgflow_ir.name == name


def test_ebnf_is_sent_as_sglang_ebnf_parameter() -> None:
    from sglang.lang.ir import SglSamplingParams

    params = SglSamplingParams(max_new_tokens=5, regex=ebnf_regex('root ::= "a"'))
    _route_ebnf(params)
    wire = params.to_srt_kwargs()
    assert wire["ebnf"] == 'root ::= "a"'
    assert wire["regex"] is None
