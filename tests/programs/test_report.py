"""``sgflow.programs.report``: the prefix and enforcement report, placed in the source (what
``sgflow check --explain`` prints and ``POST /v1/programs/check`` answers). Pure: no engine."""

from __future__ import annotations

import pytest

from sgflow.adapters.plan import explain_schema
from sgflow.adapters.sglang import CAPABILITIES
from sgflow.execution.executor import _excerpt
from sgflow.programs.loader import parse_source
from sgflow.programs.model import Program
from sgflow.programs.report import explain_report, prefix_report, step_pointers

SOURCE = """\
program: report
system: |-
  Fixed instructions,
  on two lines.
context:
  - {role: user, content: 'Quoted example.'}
steps:
  - id: first
    user: >-
      Sort {{ inputs.x }} now.
    gen:
      json_schema: {type: object, properties: {é: {type: string, format: email}}}
  - id: many
    fork:
      n: 2
      steps:
        - id: inner
          gen: {grammar: iso-date}
"""


def _rows(schema: dict) -> list[dict]:
    return explain_schema(schema, CAPABILITIES)


def test_the_prefix_is_placed_in_the_source() -> None:
    source = parse_source(SOURCE)
    prog = Program.model_validate(source.data)
    report = prefix_report(prog, source=source, text=SOURCE)
    assert report["breaks_at"] == "step `first` user"
    spans = {s["field"]: s for s in report["spans"]}
    assert list(spans) == ["/system", "/context/0/content", "/steps/0/user"]
    text = {f: SOURCE[s["span"][0] : s["span"][1]] for f, s in spans.items()}
    # a block scalar from its first line, a quoted one inside its quotes, a template up to
    # its first mark
    assert text["/system"] == "Fixed instructions,\n  on two lines."
    assert (spans["/system"]["line"], spans["/system"]["end_line"]) == (3, 4)
    assert text["/context/0/content"] == "Quoted example."
    assert text["/steps/0/user"] == "Sort "
    assert report["text"].endswith("<|im_start|>user\nSort ")
    # without the source, what `sgflow check` has always printed
    assert set(prefix_report(prog)) == {"shared_chars", "breaks_at", "static_chars_after"}


def test_keywords_are_placed_in_the_schema_written_in_the_program() -> None:
    source = parse_source(SOURCE)
    prog = Program.model_validate(source.data)
    sections = explain_report(prog, _rows, source=source)
    assert [(s["step"], s["field"]) for s in sections] == [("first", "/steps/0/gen")]
    rows = {(r["pointer"], r["keyword"]): r for r in sections[0]["keywords"]}
    email = rows[("/properties/é", "format")]
    assert email["field"] == "/steps/0/gen/json_schema/properties/é/format"
    assert email["line"] == 12
    start, end = email["span"]
    assert SOURCE[start:end] == "format: email"  # offsets count code points: é is one
    # without the source: the rows as `sgflow check --explain` prints them
    assert "line" not in explain_report(prog, _rows)[0]["keywords"][0]


def test_step_pointers_reach_into_forks() -> None:
    prog = Program.model_validate(parse_source(SOURCE).data)
    assert step_pointers(prog.steps) == {
        "first": "/steps/0",
        "many": "/steps/1",
        "inner": "/steps/1/fork/steps/0",
    }


@pytest.mark.parametrize(
    ("size", "kept"),
    [(10, "x" * 10), (8000, "x" * 8000)],
)
def test_a_short_trace_prompt_is_kept_whole(size: int, kept: str) -> None:
    assert _excerpt("x" * size, 8000) == kept


def test_a_long_trace_prompt_keeps_its_head_and_tail() -> None:
    text = "a" * 5000 + "b" * 5000
    short = _excerpt(text, 8000)
    assert short.startswith("a" * 4000) and short.endswith("b" * 4000)
    assert "[… 2000 characters …]" in short
