"""Check a constraint without a tokenizer: every problem, or the compiled grammar.

:func:`check` returns all problems of a spec (an empty list means the engine will accept
it); :func:`compile_checked` returns the xgrammar grammar or raises the first problem.
Both apply the static limits of :func:`~sgflow.grammars.limits.get_limits` first, then
build the grammar with xgrammar — the compiler the engine uses — under
``compile_timeout_s``. Built grammars are cached by content hash
(:func:`~sgflow.grammars.compiler.cache_info`).
"""

from __future__ import annotations

import xgrammar as xgr

from sgflow.grammars.compiler import CheckResult, cached_grammar, memo_check
from sgflow.grammars.errors import GrammarError
from sgflow.grammars.layout import JsonLayout
from sgflow.grammars.limits import Limits, get_limits
from sgflow.grammars.schema_checks import check_schema_static, regex_errors
from sgflow.grammars.spec import Choices, Ebnf, JsonSchema, Named, Regex, Spec

__all__ = ["check", "compile_checked", "resolve"]

_Concrete = Regex | JsonSchema | Ebnf


def check(spec: Spec) -> list[GrammarError]:
    """Every problem of ``spec``, each with a code, a pointer into the constraint and a hint.

    Never raises for a bad constraint; static problems are all reported, and only a
    constraint without any is compiled (so at most one compile error is reported).
    Results are memoised by content and limits (:func:`memo_check`).
    """
    limits = get_limits()
    layout = limits.layout
    return memo_check(spec, (limits, layout), lambda: _check(spec, limits, layout))[0]


def compile_checked(spec: Spec, *, layout: JsonLayout | None = None) -> xgr.Grammar:
    """The xgrammar grammar of ``spec``; raises the first :class:`GrammarError` of :func:`check`.

    A JSON Schema is laid out as the limits say (the engine's layout), or as ``layout``:
    :data:`~sgflow.grammars.layout.ANY_LAYOUT` to match a value written in any layout."""
    limits = get_limits()
    layout = layout or limits.layout
    errors, grammar = memo_check(spec, (limits, layout), lambda: _check(spec, limits, layout))
    if errors:
        raise errors[0]
    assert grammar is not None  # no problem means a grammar
    return grammar


def _check(spec: Spec, limits: Limits, layout: JsonLayout) -> CheckResult:
    errors, concrete = _static(spec, limits)
    if errors or concrete is None:
        return errors, None
    try:
        return [], _build(concrete, limits, layout)
    except GrammarError as err:
        return [err], None


def resolve(spec: Spec) -> Regex | JsonSchema | Ebnf:
    """The regex, schema or EBNF a spec stands for: choices become a regex, names are looked
    up in the library (raises ``grammar.unknown_name``)."""
    if isinstance(spec, Named):
        return spec.resolve()
    if isinstance(spec, Choices):
        return spec.to_regex()
    return spec


def _build(spec: _Concrete, limits: Limits, layout: JsonLayout) -> xgr.Grammar:
    return cached_grammar(spec, layout=layout, timeout_s=limits.compile_timeout_s)


def _static(spec: Spec, limits: Limits) -> tuple[list[GrammarError], _Concrete | None]:
    if isinstance(spec, Named):
        try:
            return _static(spec.resolve(), limits)
        except GrammarError as err:
            return [err], None
    if isinstance(spec, Choices):
        return _choices(spec, limits), spec.to_regex()
    if isinstance(spec, Regex):
        if not isinstance(spec.pattern, str):
            return [GrammarError("grammar.invalid_regex", "", "a regex must be a string")], None
        return regex_errors(spec.pattern, "", limits), spec
    if isinstance(spec, Ebnf):
        return _ebnf(spec, limits), spec
    return check_schema_static(spec.schema, limits), spec


def _ebnf(spec: Ebnf, limits: Limits) -> list[GrammarError]:
    if not isinstance(spec.grammar, str):
        return [GrammarError("grammar.invalid_ebnf", "", "an EBNF grammar must be a string")]
    if len(spec.grammar) > limits.max_ebnf_chars:
        return [
            GrammarError(
                "limit.grammar_size",
                "",
                f"the grammar is {len(spec.grammar)} characters; the limit is "
                f"{limits.max_ebnf_chars}",
                "factor repeated parts into rules",
                limit=limits.max_ebnf_chars,
            )
        ]
    return []


def _choices(spec: Choices, limits: Limits) -> list[GrammarError]:
    options = spec.options
    if not options:
        return [
            GrammarError(
                "grammar.invalid_choices", "", "the choices list is empty", "list at least one"
            )
        ]
    if len(options) > limits.max_enum_size:
        return [
            GrammarError(
                "limit.enum_size",
                "",
                f"{len(options)} choices; the limit is {limits.max_enum_size}",
                "use a regex or a grammar for open-ended answers",
                limit=limits.max_enum_size,
            )
        ]
    errors: list[GrammarError] = []
    seen: set[str] = set()
    for i, option in enumerate(options):
        if not isinstance(option, str) or option == "":
            errors.append(
                GrammarError(
                    "grammar.invalid_choices",
                    f"/{i}",
                    "each choice must be a non-empty string",
                    "remove the empty choice",
                )
            )
        elif option in seen:
            errors.append(
                GrammarError(
                    "grammar.invalid_choices",
                    f"/{i}",
                    f"duplicate choice {option!r}",
                    "list each choice once",
                )
            )
        else:
            seen.add(option)
    return errors
