"""``POST /v1/programs/check``: what ``sgflow check --explain`` says about a program, as an
answer an editor can draw (the playground's diagnostics, keyword table and prefix
highlight), without storing anything.

The body is the one ``POST /v1/programs`` takes. A program the checker finds problems in is
still a 200 (``ok`` false, every problem with its code, field, line and span); the request
itself is refused only when it cannot be read as a program at all: 422 ``request.invalid``
for a malformed ``{"source": …}`` body, and the bounded loader's 4xx codes
(``limit.yaml_aliases``, ``json.duplicate_key``, ``limit.json_depth``, ``limit.json_size``…)
for a hostile or oversized source, with ``field`` ``/source`` and the ``line``.
CPU-bound (the checker compiles grammars): call :func:`check_program_body` with
:func:`~sgflow.service.offload.run_cpu`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from sgflow.adapters.plan import explain_schema
from sgflow.adapters.sglang import CAPABILITIES as SGLANG
from sgflow.errors import SgflowError
from sgflow.programs.checker import check_source
from sgflow.programs.errors import ProgramError
from sgflow.programs.loader import Source, SourceError, parse_source
from sgflow.programs.model import Program
from sgflow.programs.report import explain_report, prefix_report
from sgflow.service.errors import ApiError, loc_to_field

__all__ = ["CheckReport", "check_program_body", "source_of", "source_text"]

Span = list[int]
_SPAN = "`[start, end]` character offsets (code points) into the source"


class CheckProblem(BaseModel):
    code: str = Field(description="a code of the registry, e.g. `template.unknown_input`")
    field: str = Field(description="JSON pointer into the program")
    line: int | None = Field(description="1-based line in the source")
    span: Span | None = Field(description=_SPAN)
    message: str
    hint: str | None = None


class PrefixSpan(BaseModel):
    field: str = Field(description="the template's pointer: `/system`, `/steps/0/user`…")
    line: int
    end_line: int
    span: Span = Field(description=_SPAN + "; up to the first template mark")


class PrefixReport(BaseModel):
    shared_chars: int = Field(description="characters every run starts with")
    breaks_at: str | None = Field(description="the turn where per-input text starts")
    static_chars_after: int = Field(
        description="fixed characters after that point, which runs cannot share"
    )
    text: str = Field(description="the shared prefix, chat-formatted")
    spans: list[PrefixSpan] = Field(description="where the shared text is in the source")


class KeywordRow(BaseModel):
    pointer: str = Field(description="the subschema, in the step's JSON Schema")
    keyword: str
    status: Literal["enforced", "validated", "rejected", "ignored"] = Field(
        description="enforced by the grammar while decoding; validated after generation; "
        "rejected (the schema is refused); ignored (nobody checks it)"
    )
    note: str = ""
    hint: str | None = None
    at: str | None = None
    field: str = Field(description="JSON pointer into the program")
    line: int | None
    span: Span | None = Field(description=_SPAN)


class ExplainSection(BaseModel):
    where: str = Field(description="`step ID`")
    step: str
    field: str = Field(description="the step's `gen`")
    keywords: list[KeywordRow]


class CheckReport(BaseModel):
    ok: bool = Field(description="no problems: `POST /v1/programs` would store it")
    errors: list[CheckProblem]
    ref: str | None = Field(description="`name@version`, when the program has both")
    program: dict[str, Any] | None = Field(
        description="the program as JSON, when ok (an inline program for `POST /v1/runs`)"
    )
    inputs_schema: dict[str, Any] | None = Field(
        description="the JSON Schema of the inputs, when the program has one that is a mapping"
    )
    prefix: PrefixReport | None = Field(
        description="the shared prefix (also for a program with problems, when it compiles)"
    )
    explain: list[ExplainSection] = Field(
        description="per keyword of every step's JSON Schema, who enforces it (also for a "
        "program with problems, when it compiles: a refused keyword is `rejected`)"
    )


def source_text(data: Any) -> str | None:
    """The YAML text of a ``{"source": …}`` body, None for a program sent as JSON. Raises
    422 ``request.invalid`` for a ``source`` that is not a string or has company."""
    if not (isinstance(data, dict) and "source" in data):
        return None
    extra = sorted(set(data) - {"source"})
    if extra or not isinstance(data["source"], str):
        raise ApiError(
            422,
            "request.invalid",
            'send either a program, or {"source": "<YAML text>"} and nothing else',
            field=loc_to_field(("body", extra[0] if extra else "source")),
            hint="`source` is the program file's text, as a string",
        )
    text: str = data["source"]
    return text


def source_of(data: Any, text: str) -> tuple[Source, str]:
    """The program a ``POST /v1/programs`` body holds, parsed with its lines and spans,
    and the text they point into (``source``, or the body for a program sent as JSON).
    Raises :class:`~sgflow.programs.loader.SourceError` (``program.syntax``: the source
    is not YAML) and :class:`SgflowError`: 422 ``request.invalid`` (see
    :func:`source_text`), the bounded loader's code for a hostile source (``field``
    ``/source``, with its ``line``)."""
    yaml_text = source_text(data)
    if yaml_text is None:
        try:
            return parse_source(text), text
        except SourceError:  # read already by the bounded JSON loader: keep its value
            return Source(data=data), text
    try:
        return parse_source(yaml_text), yaml_text
    except SourceError as exc:
        if exc.code == "program.syntax":
            raise
        raise SgflowError(
            exc.code,
            f"the source{f' (line {exc.line})' if exc.line else ''}: {exc}",
            field="/source",
            limit=exc.limit,
            hint=exc.hint,
            extra={"line": exc.line, "pointer": exc.pointer or None},
        ) from None


def check_program_body(data: Any, text: str) -> CheckReport:
    """The check report of a ``POST /v1/programs`` body (``data``, its JSON ``text``)."""
    try:
        source, source_text = source_of(data, text)
    except SourceError as exc:
        return _report([exc.problem()], None, None)
    errors = check_source(source)
    report = _report(errors, source, source_text)
    try:
        prog = Program.model_validate(source.data)
    except ValidationError:  # the checker said why (program.unknown_field, …)
        return report
    if not errors:
        report.program = source.data
    try:
        prefix = prefix_report(prog, source=source, text=source_text)
        sections = explain_report(prog, lambda s: explain_schema(s, SGLANG), source=source)
    except Exception:
        # a program with problems need not compile; the problems are the answer then
        if not errors:
            raise
        return report
    report.prefix = PrefixReport.model_validate(prefix)
    report.explain = [ExplainSection.model_validate(s) for s in sections]
    return report


def _report(errors: list[ProgramError], source: Source | None, text: str | None) -> CheckReport:
    data = source.data if source is not None else None
    inputs = data.get("inputs", {"type": "object"}) if isinstance(data, dict) else None
    name, version = (
        (data.get("program"), data.get("version", 1)) if isinstance(data, dict) else (None, None)
    )
    return CheckReport(
        ok=not errors,
        errors=[_problem(e, source) for e in errors],
        ref=f"{name}@{version}" if isinstance(name, str) and isinstance(version, int) else None,
        program=None,
        inputs_schema=inputs if isinstance(inputs, dict) else None,
        prefix=None,
        explain=[],
    )


def _problem(err: ProgramError, source: Source | None) -> CheckProblem:
    span = source.span_of(err.pointer) if source is not None else None
    return CheckProblem(
        code=err.code,
        field=err.pointer,
        line=err.line if err.line is not None or source is None else source.line_of(err.pointer),
        span=list(span) if span else None,
        message=err.message,
        hint=err.hint or None,
    )
