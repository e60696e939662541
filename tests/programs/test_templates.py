"""User templates run in jinja2's immutable sandbox with size and time caps."""

from __future__ import annotations

import pytest

from sgflow.programs.templates import (
    RenderLimits,
    TemplateFailure,
    evaluate,
    parse_template,
    references,
    render,
    render_value,
)

CTX = {"inputs": {"doc": "hello", "items": [1, 2]}, "steps": {"kind": "invoice", "n": {"a": 3}}}


def test_renders_inputs_and_steps() -> None:
    assert render("{{ inputs.doc }} / {{ steps.kind }}", CTX) == "hello / invoice"


@pytest.mark.parametrize(
    ("template", "kind", "needle"),
    [
        ("{{ nope }}", "undefined", "nope"),
        ("{{ inputs.doc.__class__.__mro__ }}", "error", "sandbox|unsafe|__class__"),
        ("{{ inputs.items.append(3) }}", "error", "sandbox|append|unsafe"),
        ("{% for i in range(10**7) %}x{% endfor %}", "error", "range"),
        ("{{ 'x' * 10 }}{% for i in range(90000) %}yyy{% endfor %}", "limit", "exceeds"),
        ("{{ ", "syntax", "line 1"),
    ],
)
def test_refusals(template: str, kind: str, needle: str) -> None:
    with pytest.raises(TemplateFailure, match=needle) as err:
        render(template, CTX, RenderLimits(max_chars=100_000))
    assert err.value.kind == kind


def test_time_cap() -> None:
    slow = "{% for i in range(90000) %}{% for j in range(50) %}{% endfor %}x{% endfor %}"
    with pytest.raises(TemplateFailure, match="took over"):
        render(slow, CTX, RenderLimits(max_seconds=0.05))


def test_whole_expression_keeps_its_type() -> None:
    value = render_value(
        {"a": "{{ steps.n }}", "b": "n={{ steps.n.a }}", "c": ["{{ inputs.items }}"]}, CTX
    )
    assert value == {"a": {"a": 3}, "b": "n=3", "c": [[1, 2]]}


def test_expressions() -> None:
    assert evaluate("steps.kind in ['invoice', 'receipt']", CTX) is True
    assert evaluate("inputs.items | length", CTX) == 2


def test_references_finds_step_ids_and_free_names() -> None:
    free, steps = references(
        parse_template("{{ steps.a }} {{ steps['b'] }} {{ x }} {{ inputs.y }}")
    )
    assert steps == {"a", "b"}
    assert free == {"steps", "x", "inputs"}
