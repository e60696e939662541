"""What a check reports besides the problems: the prefix every run of a program shares, and,
per keyword of each step's JSON Schema, who enforces it. ``sgflow check`` prints it and
``POST /v1/programs/check`` answers it; both compute it here.

With the program's :class:`~sgflow.programs.loader.Source`, each part is placed in the text:
a ``line`` (1-based) and a ``span`` (``[start, end]`` character offsets, counted in code
points) that an editor can underline or highlight. Pure: nothing here reads a file or a
socket (``base_dir`` is only handed to the compiler, for ``$ref`` files beside a program).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sgflow.grammars.errors import escape_pointer
from sgflow.programs.compiler import _TEMPLATE_MARKS, compile_program, prefix_layout
from sgflow.programs.loader import Source
from sgflow.programs.model import Program, Step

__all__ = ["KeywordRows", "explain_report", "prefix_report", "step_pointers"]

# the enforcement rows of one JSON Schema: {pointer, keyword, status, note, hint, at}
KeywordRows = Callable[[dict[str, Any]], list[dict[str, Any]]]


def step_pointers(steps: list[Step], pointer: str = "/steps") -> dict[str, str]:
    """The JSON pointer of every step by id, fork branches' steps included."""
    out: dict[str, str] = {}
    for i, step in enumerate(steps):
        out[step.id] = f"{pointer}/{i}"
        if step.fork is not None:
            out.update(step_pointers(step.fork.steps, f"{pointer}/{i}/fork/steps"))
    return out


def prefix_report(
    prog: Program,
    *,
    base_dir: str | None = None,
    source: Source | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """``shared_chars``, ``breaks_at`` (the turn where per-input text starts, or None) and
    ``static_chars_after`` (fixed text after it, which runs cannot share). With ``source``
    and its ``text`` also ``text`` (the shared prefix, chat-formatted) and ``spans``: for
    each template the prefix covers, its ``field``, ``line``, ``end_line`` and ``span`` in
    the source, up to its first template mark when the prefix ends inside it."""
    layout = prefix_layout(compile_program(prog, base_dir=base_dir))
    report: dict[str, Any] = {
        "shared_chars": len(layout.text),
        "breaks_at": layout.breaks_at,
        "static_chars_after": layout.static_after,
    }
    if source is None or text is None:
        return report
    report["text"] = layout.text
    spans = []
    for i, field in enumerate(layout.fields):
        span = source.spans.get(field)
        if span is None:
            continue
        start, end = _value_span(text, span)
        if layout.breaks_at is not None and i == len(layout.fields) - 1:
            end = _first_mark(text, start, end)
        spans.append(
            {
                "field": field,
                "line": _line(text, start),
                "end_line": _line(text, max(start, end - 1)),
                "span": [start, end],
            }
        )
    report["spans"] = spans
    return report


def explain_report(
    prog: Program,
    rows_for: KeywordRows,
    *,
    base_dir: str | None = None,
    source: Source | None = None,
) -> list[dict[str, Any]]:
    """One section per step generated under a JSON Schema: ``where``, ``step``, ``field``
    (the step's ``gen``) and ``keywords``, the rows ``rows_for`` gives for its schema. With
    ``source``, a row of a schema written in the program gets the ``field``, ``line`` and
    ``span`` of its keyword's value (``at``, which for a refused subschema is that
    subschema); a schema from the library or a ``$ref`` file: those of the ``gen``.

    ``output.schema`` has no section: it is not generated under a grammar, so every keyword
    of it is checked by ``jsonschema`` after the run."""
    ir = compile_program(prog, base_dir=base_dir)
    pointers = step_pointers(prog.steps)
    inline = {s.id for s in _all_steps(prog.steps) if s.gen and s.gen.json_schema is not None}
    out: list[dict[str, Any]] = []
    for step in ir.iter_steps():
        if step.gen is None or step.gen.constraint.schema is None:
            continue
        gen = f"{pointers.get(step.id, '/steps')}/gen"
        rows = rows_for(step.gen.constraint.schema)
        if source is not None:
            for row in rows:
                at = row.get("at") or f"{row['pointer']}/{escape_pointer(row['keyword'])}"
                field = f"{gen}/json_schema{at}" if step.id in inline else gen
                row.update(field=field, line=source.line_of(field))
                row["span"] = list(span) if (span := source.span_of(field)) else None
        out.append({"where": f"step {step.id}", "step": step.id, "field": gen, "keywords": rows})
    return out


def _all_steps(steps: list[Step]) -> list[Step]:
    out: list[Step] = []
    for step in steps:
        out.append(step)
        if step.fork is not None:
            out.extend(_all_steps(step.fork.steps))
    return out


def _value_span(text: str, span: tuple[int, int]) -> tuple[int, int]:
    """The text of a member whose span runs from its key to the end of its value: past
    ``key:``, a block indicator, its line break and indentation, or inside the quotes;
    without trailing blanks."""
    start, end = span
    colon = text.find(":", start, end)
    i = start if colon < 0 else colon + 1
    while i < end and text[i] in " \t":
        i += 1
    if i < end and text[i] in "|>":  # a block scalar: its text starts on the next line
        newline = text.find("\n", i, end)
        i = end if newline < 0 else newline + 1
        while i < end and text[i] == " ":
            i += 1
    elif i < end and text[i] in "\"'":  # a quoted scalar: its text is inside the quotes
        quote = text[i]
        i += 1
        end = end - 1 if end > i and text[end - 1] == quote else end
    while end > i and text[end - 1] in " \t\r\n":
        end -= 1
    return i, end


def _first_mark(text: str, start: int, end: int) -> int:
    """The offset of the first template mark in ``text[start:end]``, else ``end``."""
    found = [i for i in (text.find(m, start, end) for m in _TEMPLATE_MARKS) if i >= 0]
    return min(found, default=end)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
