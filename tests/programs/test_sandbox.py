"""Template-sandbox escapes: every one is refused before a program is stored, or bounded when
it renders (in size and time), never a frozen checker or a gigabyte in a worker."""

from __future__ import annotations

import pytest

from sgflow.programs.checker import check_program
from sgflow.programs.templates import RenderLimits, TemplateFailure, evaluate, render

CTX = {"inputs": {"x": "abc", "l": list(range(1000)), "d": {"a": 1}}, "steps": {}}

# (template, code the checker answers, or None when only rendering can tell)
STATIC = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "template.forbidden"),
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "template.forbidden"),
    ("{{ lipsum.__globals__['os'] }}", "template.forbidden"),
    ("{{ self._TemplateReference__context }}", "template.forbidden"),
    ("{{ inputs.x|attr('__class__') }}", "template.forbidden"),
    ("{{ inputs['__class__'] }}", "template.forbidden"),
    ("{{ inputs.x._private }}", "template.forbidden"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "template.forbidden"),
    ("{% include 'x' %}", "template.forbidden"),
    ("{% import 'os' as os %}", "template.forbidden"),
    ("{% from 'x' import y %}", "template.forbidden"),
    ("{% extends 'base' %}", "template.forbidden"),
    ("{% block b %}{% endblock %}", "template.forbidden"),
    ("{% filter upper %}{{ inputs.x }}{% endfilter %}", "template.forbidden"),
    ("{% set b %}{{ inputs.x }}{% endset %}{{ b }}", "template.forbidden"),
    ("{% call inputs.x() %}{% endcall %}", "template.forbidden"),
    ("{{ config }}", "template.unknown_name"),
    ("{{ namespace() }}", "template.unknown_name"),
    ("{{ joiner() }}", "template.unknown_name"),
    ("{{ dict(a=1) }}", "template.unknown_name"),
]

RUNTIME = [
    ("{{ 'a' * 10**9 }}", "limit"),
    ("{{ [1] * 10**8 }}", "limit"),
    ("{{ inputs.x * 100000000 }}", "limit"),
    ("{{ inputs.l * 100000 }}", "limit"),
    ("{% set y = inputs.x * 60000 %}{{ y + y }}", "limit"),
    ("{{ 2 ** 100000 }}", "limit"),
    ("{{ 10**3000 * 10**3000 }}", "limit"),
    ("{{ 'a'|center(10**9) }}", "limit"),
    ("{{ inputs.x|indent(10**6) }}", "limit"),
    ("{{ '%999999999d'|format(1) }}", "limit"),
    ("{{ '%*d' % (10**9, 1) }}", "limit"),
    ("{{ '%.999999999f' % 1 }}", "limit"),
    ("{{ inputs.l|join('x' * 1000) }}", "limit"),
    ("{{ inputs.x|replace('a', 'b' * 100000)|replace('b', 'c' * 100000) }}", "limit"),
    ("{{ inputs.l|batch(10**9, 0)|list }}", "limit"),
    ("{{ inputs.l|slice(10**9)|list }}", "limit"),
    ("{{ inputs.l|sum(start=[]) }}", "limit"),
    ("{{ inputs.x ~ inputs.x * 100000 }}", "limit"),
    (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "limit",
    ),
    (
        "{% for a in inputs.l %}{% for b in inputs.l %}{% for c in inputs.l %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "limit",
    ),
    ("{% for i in range(10**9) %}a{% endfor %}", "error"),
    ("{{ inputs.x.ljust(10**9) }}", "error"),
    ("{{ inputs.x.zfill(10**9) }}", "error"),
    ("{{ inputs.x.format_map(inputs) }}", "error"),
    ("{{ '{:>999999999}'.format(1) }}", "error"),
    ("{{ inputs.x.replace('a', 'b') }}", "error"),
    ("{{ inputs.l.append(1) }}", "error"),
    ("{{ inputs.d.update({}) }}", "error"),
    ("{{ (1).__class__ }}", "error"),
]


def _program(template: str) -> dict[str, object]:
    return {
        "program": "t",
        "inputs": {"type": "object", "properties": {"x": {"type": "string"}}},
        "steps": [{"id": "a", "user": template, "gen": {"max_tokens": 5}}],
    }


@pytest.mark.parametrize(("template", "code"), STATIC, ids=[t for t, _ in STATIC])
def test_the_checker_refuses_escapes_before_storing(template: str, code: str) -> None:
    errors = check_program(_program(template))
    assert code in [e.code for e in errors], errors


@pytest.mark.parametrize(("template", "kind"), RUNTIME, ids=[t for t, _ in RUNTIME])
def test_rendering_is_bounded(template: str, kind: str) -> None:
    assert check_program(_program(template)) == [] or kind == "error"
    with pytest.raises(TemplateFailure) as err:
        render(template, CTX, RenderLimits(max_seconds=0.5))
    assert err.value.kind == kind, err.value.message


def test_expressions_are_bounded_too() -> None:
    with pytest.raises(TemplateFailure) as err:
        evaluate("'a' * 10**9", CTX)
    assert err.value.kind == "limit"
    with pytest.raises(TemplateFailure) as err:
        evaluate("inputs.l | map('string') | join('y' * 10000)", CTX)
    assert err.value.kind == "limit"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.x.upper() }} {{ inputs.x|center(7) }}|", "ABC   abc  |"),
        ("{{ inputs.d.items()|list }}", "[('a', 1)]"),
        ("{{ inputs.x ~ '-' ~ inputs.x }}", "abc-abc"),
        ("{{ inputs.x * 3 }} {{ 2 ** 10 }} {{ '%05d' % 42 }}", "abcabcabc 1024 00042"),
        ("{% for i in range(3) %}{{ loop.index }}{% endfor %}", "123"),
        ("{{ inputs.x|replace('b', 'BB') }} {{ [1, 2]|join(', ') }}", "aBBc 1, 2"),
        ("{{ [1, 2, 3]|sum }} {{ inputs.l|batch(400)|list|length }}", "6 3"),
    ],
)
def test_ordinary_templates_still_work(template: str, expected: str) -> None:
    assert render(template, CTX) == expected
