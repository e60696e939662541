"""check() and compile_checked(): one case per error code, caching, the time limit."""

from __future__ import annotations

import time
from typing import Any

import pytest
import xgrammar as xgr

from sgflow.grammars import (
    CODES,
    Choices,
    Ebnf,
    GrammarError,
    JsonSchema,
    Named,
    Regex,
    Spec,
    cache_info,
    check,
    clear_cache,
    compile_checked,
    limits,
    match,
)
from sgflow.grammars import compiler as compiler_module
from sgflow.grammars.layout import ANY_LAYOUT, JsonLayout

TREE = {
    "$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array", "maxItems": 2,
                                                                  "items": {"$ref": "#/$defs/node"}}},
                       "required": ["kids"], "additionalProperties": False}},
    "$ref": "#/$defs/node",
}  # fmt: skip

# fmt: off
# (id, spec, limits in force, code, pointer, message fragment)
CASES: list[tuple[str, Spec, dict[str, Any], str, str, str]] = [
    ("regex-lookahead", Regex("a(?=b)"), {}, "grammar.unsupported", "", "lookahead"),
    ("schema-remote-ref", JsonSchema({"$ref": "other.json"}), {}, "grammar.unsupported", "/$ref",
     "not a local ref"),
    ("schema-anchor-ref", JsonSchema({"$defs": {"a": {"$anchor": "x"}}, "$ref": "#x"}), {},
     "grammar.unsupported", "/$ref", "not a local ref"),
    ("schema-dynamic-ref", JsonSchema({"$dynamicRef": "#/$defs/a", "$defs": {"a": {}}}), {},
     "grammar.unsupported", "/$dynamicRef", "ignores it"),
    ("schema-required-undeclared", JsonSchema({"type": "object", "properties": {"a": {}},
     "required": ["a", "b"]}), {}, "grammar.unsupported", "/required", "'b' not in properties"),
    ("schema-min-items-no-items", JsonSchema({"type": "array", "minItems": 1}), {},
     "grammar.unsupported", "/minItems", "without `items`"),
    ("schema-pattern-lookahead", JsonSchema({"type": "object", "properties": {"a": {
     "type": "string", "pattern": "^a(?=b)"}}}), {}, "grammar.unsupported",
     "/properties/a/pattern", "lookahead '(?=' is not supported (at character 2)"),
    ("schema-false-property", JsonSchema({"type": "object", "properties": {"a": False}}), {},
     "grammar.unsupported", "/properties/a", "`false`"),
    ("regex-syntax", Regex("(ab"), {}, "grammar.invalid_regex", "", "parenthesis is not closed"),
    ("regex-range", Regex("[z-a]"), {}, "grammar.invalid_regex", "", "lower bound is larger"),
    ("ebnf-undefined-rule", Ebnf("root ::= missing"), {}, "grammar.invalid_ebnf", "",
     'Rule "missing" is not defined'),
    ("ebnf-no-root", Ebnf('rot ::= "a"'), {}, "grammar.invalid_ebnf", "", "root rule"),
    ("schema-meta", JsonSchema({"type": "objekt"}), {}, "grammar.invalid_schema", "/type",
     "'objekt' is not one of"),
    ("schema-meta-nested", JsonSchema({"properties": {"a": {"minLength": "3"}}}), {},
     "grammar.invalid_schema", "/properties/a/minLength", "'3' is not of type 'integer'"),
    ("schema-bad-regex", JsonSchema({"type": "string", "pattern": "(a"}), {},
     "grammar.invalid_regex", "/pattern", "RE2: missing ): (a (at character 0)"),
    ("schema-contradiction", JsonSchema({"type": "string", "minLength": 5, "maxLength": 2}), {},
     "grammar.invalid_schema", "", "minLength 5 is greater than maxLength 2"),
    ("schema-dangling-ref", JsonSchema({"$ref": "#/$defs/missing"}), {},
     "grammar.invalid_schema", "/$ref", "does not resolve"),
    ("schema-not-object", JsonSchema([1]), {}, "grammar.invalid_schema", "",  # type: ignore[arg-type]
     "must be an object"),
    ("choices-empty", Choices([]), {}, "grammar.invalid_choices", "", "empty"),
    ("choices-duplicate", Choices(["a", "b", "a"]), {}, "grammar.invalid_choices", "/2",
     "duplicate choice 'a'"),
    ("unknown-name", Named("no-such-grammar"), {}, "grammar.unknown_name", "",
     "no library grammar is named 'no-such-grammar'"),
    ("ref-self", JsonSchema({"$ref": "#"}), {}, "grammar.ref_cycle", "/$ref", "never produces"),
    ("ref-loop", JsonSchema({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [
     {"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}), {}, "grammar.ref_cycle",
     "/$defs/b/anyOf/0/$ref", "never produces"),
    ("ref-recursive", JsonSchema(TREE), {"allow_recursive_refs": False}, "grammar.ref_cycle",
     "/$defs/node/properties/kids/items/$ref", "recursive $ref"),
    ("pattern-re2-repeat", JsonSchema({"type": "string", "pattern": "^a{1001}$"}), {},
     "grammar.regex_dialect", "/pattern", "a repetition of 1001: RE2 allows at most 1000"),
    ("pattern-literal-brace", JsonSchema({"type": "object", "patternProperties": {"a{,3}": {}}}),
     {}, "grammar.regex_dialect", "/patternProperties/a{,3}", "(at character 1)"),
    ("schema-depth", JsonSchema({"type": "array", "items": {"type": "array", "items": {}}}),
     {"max_schema_depth": 1}, "limit.schema_depth", "/items/items", "nest 2 deep"),
    ("schema-depth-const", JsonSchema({"const": [[[1]]]}), {"max_schema_depth": 2},
     "limit.schema_depth", "/const", "nests deeper than 2"),
    ("schema-size", JsonSchema({"description": "x" * 200}), {"max_schema_bytes": 100},
     "limit.schema_size", "", "the limit is 100"),
    ("enum-size", JsonSchema({"enum": list(range(11))}), {"max_enum_size": 10},
     "limit.enum_size", "/enum", "11 values; the limit is 10"),
    ("schema-branches", JsonSchema({"type": "object", "properties": {"a": {"anyOf": [
        {"const": i} for i in range(4)]}}}), {"max_schema_branches": 3},
     "limit.schema_branches", "/properties/a/anyOf", "anyOf has 4 subschemas; the limit is 3"),
    ("schema-branches-oneof", JsonSchema({"oneOf": [{"type": "string"}] * 5}),
     {"max_schema_branches": 4}, "limit.schema_branches", "/oneOf", "the limit is 4"),
    ("choices-size", Choices([str(i) for i in range(11)]), {"max_enum_size": 10},
     "limit.enum_size", "", "11 choices"),
    ("regex-size", Regex("a" * 11), {"max_regex_chars": 10}, "limit.regex_size", "",
     "11 characters; the limit is 10"),
    ("pattern-size", JsonSchema({"type": "object", "patternProperties": {"a" * 11: {}}}),
     {"max_regex_chars": 10}, "limit.regex_size", "/patternProperties/aaaaaaaaaaa",
     "the limit is 10"),
    ("ebnf-size", Ebnf('root ::= "' + "a" * 20 + '"'), {"max_ebnf_chars": 10},
     "limit.grammar_size", "", "the limit is 10"),
]
# fmt: on


@pytest.mark.parametrize(
    ("spec", "changes", "code", "pointer", "fragment"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_error(spec: Spec, changes: dict[str, Any], code: str, pointer: str, fragment: str) -> None:
    with limits(**changes):
        errors = check(spec)
        assert [(e.code, e.pointer) for e in errors][:1] == [(code, pointer)], errors
        assert fragment in errors[0].message
        assert errors[0].hint
        with pytest.raises(GrammarError, match=code.replace(".", r"\.")):
            compile_checked(spec)


def test_every_code_has_a_case() -> None:
    covered = {c[3] for c in CASES} | {"grammar.compile_timeout"}
    assert covered == set(CODES)


def test_compile_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    real = compiler_module.build_grammar

    def slow(spec: Any, *, layout: JsonLayout) -> xgr.Grammar:
        time.sleep(0.3)
        return real(spec, layout=layout)

    monkeypatch.setattr(compiler_module, "build_grammar", slow)
    spec = Regex("slow-[a-z]{3}")
    with limits(compile_timeout_s=0.05):
        with pytest.raises(GrammarError, match=r"did not compile within 0\.05s") as info:
            compile_checked(spec)
        assert info.value.code == "grammar.compile_timeout"
        assert info.value.limit == 0.05
    # a timeout is not cached: with time enough, the same spec compiles
    assert check(spec) == []


def test_static_problems_are_all_reported() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "pattern": "(?i)x"},
            "b": {"$ref": "https://example.com/b.json"},
            "c": {"enum": list(range(20))},
        },
    }
    with limits(max_enum_size=10):
        errors = check(JsonSchema(schema))
    assert [(e.code, e.pointer) for e in errors] == [
        ("grammar.unsupported", "/properties/a/pattern"),
        ("grammar.unsupported", "/properties/b/$ref"),
        ("limit.enum_size", "/properties/c/enum"),
    ]


def test_recursion_is_allowed_by_default() -> None:
    grammar = compile_checked(JsonSchema(TREE), layout=ANY_LAYOUT)
    assert match(grammar, '{"kids": [{"kids": []}, {"kids": [{"kids": []}]}]}').accepted


def test_why_loops_are_refused() -> None:
    # xgrammar compiles a loop without structure to a grammar that accepts nothing at all
    grammar = xgr.Grammar.from_json_schema('{"$ref": "#"}')
    assert not any(match(grammar, text).accepted for text in ("1", "{}", '"x"', "null"))


def test_compile_checked_returns_the_grammar_and_caches_it() -> None:
    clear_cache()
    spec = Named("yes-no")
    grammar = compile_checked(spec)
    assert isinstance(grammar, xgr.Grammar)
    assert compile_checked(Regex("(yes|no)")) is grammar  # same content, same entry
    info = cache_info()
    assert (info.hits, info.misses, info.size) == (1, 1, 1)
    first, second = check(Regex("(yes")), check(Regex("(yes"))  # errors are cached too
    assert [e.to_dict() for e in first] == [e.to_dict() for e in second]
    assert cache_info().hits == 1  # the second check is answered by the memo of whole results
    clear_cache()
    assert cache_info().size == 0


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiler_module._cache, "maxsize", 3)
    clear_cache()
    for i in range(5):
        compile_checked(Regex(f"x{i}"))
    assert cache_info().size == 3
    clear_cache()


def test_error_body_and_text() -> None:
    with limits(max_regex_chars=3):
        (error,) = check(Regex("abcd"))
    assert error.to_dict() == {
        "code": "limit.regex_size",
        "field": "",
        "message": "the regex is 4 characters; the limit is 3",
        "hint": "shorten it, or use an EBNF grammar for large languages",
        "limit": 3,
        "retryable": False,
    }
    assert str(error).startswith("limit.regex_size: the regex is 4 characters")
    error.pointer = "/steps/0/gen/regex" + error.pointer  # callers prefix their location
    assert error.to_dict()["field"] == "/steps/0/gen/regex"
    assert str(error).startswith("limit.regex_size at /steps/0/gen/regex: the regex")
