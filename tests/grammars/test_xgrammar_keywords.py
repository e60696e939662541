"""What xgrammar 0.2.8 does with each JSON Schema keyword: the evidence behind the report.

For every row: a small schema, an instance valid against it and one that violates only
the keyword under test. The test compiles the schema the way the engine does, asks
xgrammar's matcher whether it accepts each instance, records whether compilation raised
or printed a warning (xgrammar's C++ log goes to fd 2, hence ``capfd``), and then checks
that ``sgflow.grammars.explain`` reports the status the observed behaviour implies.
A different xgrammar fails here first — update ``enforcement_rules.py`` with what it does.

Behaviours: ``enforces`` (valid accepted, violating refused), ``ignores`` (both accepted),
``raises`` (compilation fails), ``refuses-valid`` (the grammar cannot produce the valid
instance: strictness that makes the keyword unsatisfiable).
"""

from __future__ import annotations

import json
import warnings
from typing import Any, NamedTuple

import jsonschema
import pytest
import xgrammar as xgr

from sgflow.grammars import explain
from sgflow.grammars.enforcement_rules import KEYWORDS

D7 = "http://json-schema.org/draft-07/schema#"
CHECKED = set(jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers)
_COMPILER = xgr.GrammarCompiler(xgr.TokenizerInfo([]), cache_enabled=False)


class Case(NamedTuple):
    id: str
    schema: dict[str, Any]
    at: str  # JSON pointer of the keyword under test (KeywordReport.at)
    valid: str | None
    violating: str | None
    behaviour: str
    status: str
    warns: bool = False
    judge: bool = True  # jsonschema can validate the instances (no remote refs)


def S(**kw: Any) -> dict[str, Any]:
    return {"type": "string", **kw}


def I(**kw: Any) -> dict[str, Any]:  # noqa: E743 - reads as "integer schema"
    return {"type": "integer", **kw}


def N(**kw: Any) -> dict[str, Any]:
    return {"type": "number", **kw}


def A(**kw: Any) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "integer"}, **kw}


def O(**kw: Any) -> dict[str, Any]:  # noqa: E743 - reads as "object schema"
    props = {"a": {"type": "integer"}, "b": {"type": "integer"}}
    return {"type": "object", "properties": props, **kw}


def fmt(name: str, valid: str, bad: str | None, behaviour: str, status: str) -> Case:
    return Case(f"format:{name}", S(format=name), "/format", valid, bad, behaviour, status)


def unless_checked(name: str) -> str:
    return "validated" if name in CHECKED else "ignored"


# fmt: off
CASES = [
    # -- strings ---------------------------------------------------------------------------
    Case("type", I(), "/type", "3", "3.5", "enforces", "enforced"),
    Case("type-list", {"type": ["string", "null"]}, "/type", "null", "1", "enforces",
         "enforced"),
    Case("minLength", S(minLength=3), "/minLength", '"abc"', '"ab"', "enforces", "enforced"),
    Case("maxLength", S(maxLength=3), "/maxLength", '"abc"', '"abcd"', "enforces",
         "enforced"),
    Case("maxLength-no-type", {"maxLength": 2}, "/maxLength", '"ab"', '"abc"', "ignores",
         "validated"),
    Case("pattern", S(pattern="^[a-z]+$"), "/pattern", '"abc"', '"ab1"', "enforces",
         "enforced"),
    Case("minLength+pattern", S(pattern="^[a-z]+$", minLength=3), "/minLength", '"abc"',
         '"ab"', "ignores", "validated", warns=True),
    Case("maxLength+pattern", S(pattern="^[a-z]+$", maxLength=3), "/maxLength", '"abc"',
         '"abcd"', "ignores", "validated", warns=True),
    Case("minLength+format", S(format="email", minLength=8), "/minLength", '"ab@c.com"',
         '"a@b.com"', "ignores", "validated", warns=True),
    Case("maxLength+format", S(format="email", maxLength=7), "/maxLength", '"a@b.com"',
         '"ab@c.com"', "ignores", "validated", warns=True),
    Case("maxLength+unknown-format", S(format="bogus", maxLength=3), "/maxLength", '"abc"',
         '"abcd"', "enforces", "enforced"),
    Case("pattern+format", S(format="date", pattern="^2024"), "/pattern", '"2024-01-01"',
         '"2023-01-01"', "ignores", "validated"),
    fmt("date", '"2024-03-04"', '"2024-3-4"', "enforces", "validated"),
    fmt("date", '"2024-03-04"', '"2024-02-30"', "ignores", "validated"),
    fmt("date-time", '"2024-03-04T10:20:30Z"', '"2024-03-04 10:20"', "enforces", "validated"),
    fmt("date-time", '"2024-03-04T10:20:30Z"', '"2024-02-30T10:20:30Z"', "ignores", "validated"),
    fmt("time", '"10:20:30Z"', '"25:00:00Z"', "enforces", "enforced"),
    fmt("duration", '"P3D"', '"3D"', "enforces", "enforced"),
    fmt("email", '"a@b.co"', '"not-an-email"', "enforces", "enforced"),
    fmt("hostname", '"ex.com"', '"ex..com"', "enforces", "validated"),
    fmt("ipv4", '"192.168.0.1"', '"999.1.1.1"', "enforces", "validated"),
    fmt("ipv4", '"192.168.0.1"', '"01.2.3.4"', "ignores", "validated"),
    fmt("ipv6", '"::1"', '"1:::2"', "enforces", "enforced"),
    fmt("uuid", '"123e4567-e89b-12d3-a456-426614174000"', '"123e4567"', "enforces", "enforced"),
    fmt("uri", '"https://example.com/x"', '"not a uri"', "enforces", "enforced"),
    fmt("uri-reference", '"/a/b"', '"a b"', "enforces", "enforced"),
    fmt("uri-template", '"http://a/{x}"', '"http://a/{x"', "enforces", "enforced"),
    fmt("json-pointer", '"/a/b"', '"a/b"', "enforces", "enforced"),
    fmt("relative-json-pointer", '"0/a"', '"/a"', "enforces", "enforced"),
    fmt("idn-email", '"a@b.co"', '"ab"', "ignores", unless_checked("idn-email")),
    fmt("iri", '"http://a.b"', '"a b"', "ignores", unless_checked("iri")),
    fmt("regex", '"a+"', '"("', "ignores", unless_checked("regex")),
    fmt("bogus", '"x"', None, "ignores", "ignored"),
    # -- numbers ---------------------------------------------------------------------------
    Case("minimum:int", I(minimum=5), "/minimum", "5", "4", "enforces", "enforced"),
    Case("maximum:int", I(maximum=5), "/maximum", "5", "6", "enforces", "enforced"),
    Case("exclusiveMinimum:int", I(exclusiveMinimum=5), "/exclusiveMinimum", "6", "5",
         "enforces", "enforced"),
    Case("exclusiveMaximum:int", I(exclusiveMaximum=5), "/exclusiveMaximum", "4", "5",
         "enforces", "enforced"),
    Case("minimum:num", N(minimum=1.5), "/minimum", "1.5", "1.4", "enforces", "enforced"),
    Case("maximum:num", N(maximum=1.5), "/maximum", "1.5", "1.6", "enforces", "enforced"),
    Case("exclusiveMinimum:num", N(exclusiveMinimum=1.5), "/exclusiveMinimum", "1.6", "1.5",
         "enforces", "enforced"),
    Case("exclusiveMaximum:num", N(exclusiveMaximum=1.5), "/exclusiveMaximum", "1.4", "1.5",
         "enforces", "enforced"),
    Case("minimum-no-type", {"minimum": 3}, "/minimum", "3", "2", "ignores", "validated"),
    Case("minimum:int-fraction", I(minimum=1.5), "/minimum", "2", "1", "raises",
         "rejected"),
    Case("maximum:int-beyond-int64", I(maximum=2**63), "/maximum", "0", None, "raises",
         "rejected"),
    Case("multipleOf:int", I(multipleOf=5), "/multipleOf", "10", "7", "enforces",
         "enforced"),
    Case("multipleOf:num", N(multipleOf=0.5), "/multipleOf", "1.5", "1.2", "ignores",
         "validated", warns=True),
    # -- enum / const ----------------------------------------------------------------------
    Case("enum", {"enum": ["a", "b", 1]}, "/enum", '"a"', '"c"', "enforces", "enforced"),
    Case("enum-empty", {"enum": []}, "/enum", None, "1", "raises", "rejected"),
    Case("const", {"const": "x"}, "/const", '"x"', '"y"', "enforces", "enforced"),
    Case("maxLength+enum", S(enum=["a", "abc"], maxLength=2), "/maxLength", '"a"', '"abc"',
         "ignores", "validated"),
    Case("type+enum", S(enum=["a", "b"]), "/type", '"a"', "1", "enforces", "enforced"),
    # -- arrays ----------------------------------------------------------------------------
    Case("items", A(), "/items", "[1]", '["a"]', "enforces", "enforced"),
    Case("minItems", A(minItems=2), "/minItems", "[1,2]", "[1]", "enforces", "enforced"),
    Case("maxItems", A(maxItems=2), "/maxItems", "[1,2]", "[1,2,3]", "enforces",
         "enforced"),
    Case("minItems-no-items", {"type": "array", "minItems": 1}, "/minItems", "[1]", "[]",
         "raises", "rejected"),
    Case("maxItems-no-items", {"type": "array", "maxItems": 2}, "/maxItems", "[1]",
         "[1,2,3]", "refuses-valid", "rejected"),
    Case("uniqueItems", A(uniqueItems=True), "/uniqueItems", "[1,2]", "[1,1]", "ignores",
         "validated"),
    Case("contains", A(contains={"const": 3}), "/contains", "[1,3]", "[1,2]", "ignores",
         "validated"),
    Case("minContains", A(contains={"const": 3}, minContains=2), "/minContains", "[3,3]",
         "[3,1]", "ignores", "validated"),
    Case("maxContains", A(contains={"const": 3}, maxContains=1), "/maxContains", "[3,1]",
         "[3,3]", "ignores", "validated"),
    Case("prefixItems", {"type": "array", "prefixItems": [S(), I()]}, "/prefixItems",
         '["a",1]', '[1,"a"]', "enforces", "enforced"),
    Case("items:false", {"type": "array", "prefixItems": [S()], "items": False}, "/items",
         '["a"]', '["a",1]', "enforces", "enforced"),
    Case("items-array-draft7", {"$schema": D7, "type": "array", "items": [S()]}, "/items",
         '["a"]', None, "raises", "rejected"),
    Case("unevaluatedItems", {"type": "array", "prefixItems": [I()],
         "unevaluatedItems": S()}, "/unevaluatedItems", '[1,"a"]', "[1,2]", "enforces",
         "enforced"),
    # -- objects ---------------------------------------------------------------------------
    Case("properties", O(), "/properties", '{"a":1}', '{"a":"x"}', "enforces", "enforced"),
    Case("required", O(required=["a"]), "/required", '{"a":1}', '{"b":1}', "enforces",
         "enforced"),
    Case("required-undeclared", O(required=["a", "zz"]), "/required", '{"a":1,"zz":2}',
         None, "refuses-valid", "rejected"),
    Case("required-undeclared-open", O(required=["zz"], additionalProperties=True),
         "/required", '{"a":1,"zz":1}', '{"a":1}', "ignores", "validated"),
    Case("required-no-type", {"required": ["a"]}, "/required", '{"a":1}', "{}", "ignores",
         "validated"),
    Case("additionalProperties:false", O(additionalProperties=False),
         "/additionalProperties", '{"a":1}', '{"a":1,"c":2}', "enforces", "enforced"),
    Case("additionalProperties:schema", O(additionalProperties=S()),
         "/additionalProperties", '{"a":1,"c":"x"}', '{"a":1,"c":2}', "enforces",
         "enforced"),
    Case("patternProperties", {"type": "object", "patternProperties": {"x_.*": I()}},
         "/patternProperties", '{"x_a":1}', '{"x_a":"s"}', "enforces", "enforced"),
    Case("propertyNames", {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"},
         "additionalProperties": I()}, "/propertyNames", '{"ab":1}', '{"AB":1}',
         "enforces", "enforced"),
    Case("minProperties", {"type": "object", "additionalProperties": I(), "minProperties": 2},
         "/minProperties", '{"a":1,"b":2}', '{"a":1}', "enforces", "enforced"),
    Case("maxProperties", {"type": "object", "additionalProperties": I(), "maxProperties": 1},
         "/maxProperties", '{"a":1}', '{"a":1,"b":2}', "enforces", "enforced"),
    Case("dependentRequired", O(dependentRequired={"a": ["b"]}), "/dependentRequired",
         '{"a":1,"b":2}', '{"a":1}', "ignores", "validated"),
    Case("dependentSchemas", O(dependentSchemas={"a": {"required": ["b"]}}),
         "/dependentSchemas", '{"a":1,"b":2}', '{"a":1}', "ignores", "validated"),
    Case("dependencies-draft7", {"$schema": D7, **O(dependencies={"a": ["b"]})},
         "/dependencies", '{"a":1,"b":2}', '{"a":1}', "ignores", "validated"),
    Case("unevaluatedProperties", O(unevaluatedProperties=S()), "/unevaluatedProperties",
         '{"a":1,"c":"x"}', '{"a":1,"c":2}', "enforces", "enforced"),
    Case("false-property", {"type": "object", "properties": {"a": False}}, "/properties/a",
         "{}", '{"a":1}', "raises", "rejected"),
    # -- combinators and references ------------------------------------------------------------
    Case("anyOf", {"anyOf": [I(), S(maxLength=2)]}, "/anyOf", '"ab"', '"abc"', "enforces",
         "enforced"),
    Case("oneOf-overlapping", {"oneOf": [I(), N(minimum=1)]}, "/oneOf", "0", "2",
         "ignores", "validated", warns=True),
    Case("oneOf-disjoint", {"oneOf": [I(), S()]}, "/oneOf", '"x"', "true", "enforces",
         "validated"),
    Case("allOf", {"allOf": [I(), {"minimum": 3}]}, "/allOf", "3", "2", "ignores",
         "validated", warns=True),
    Case("allOf-single", {"allOf": [I(minimum=3)]}, "/allOf", "3", "2", "enforces",
         "enforced"),
    Case("allOf-single+sibling", I(allOf=[{"minimum": 3}]), "/allOf", "3", "2", "ignores",
         "validated"),
    Case("not", I(**{"not": {"const": 3}}), "/not", "4", "3", "ignores", "validated"),
    Case("if/then/else", I(**{"if": {"minimum": 10}, "then": {"maximum": 20},
                              "else": {"maximum": 5}}), "/then", "15", "25", "ignores",
         "validated"),
    Case("$ref", {"$defs": {"s": S(maxLength=2)}, "$ref": "#/$defs/s"}, "/$ref", '"ab"',
         '"abc"', "enforces", "enforced"),
    Case("$ref-definitions", {"definitions": {"s": S(maxLength=2)},
         "$ref": "#/definitions/s"}, "/$ref", '"ab"', '"abc"', "enforces", "enforced"),
    Case("$ref+sibling", {"$defs": {"s": S()}, "$ref": "#/$defs/s", "maxLength": 2},
         "/maxLength", '"ab"', '"abc"', "ignores", "validated"),
    Case("$ref+sibling-type", {"$defs": {"m": {"minimum": 3}}, "$ref": "#/$defs/m",
         "type": "integer"}, "/type", "3", '"x"', "ignores", "validated"),
    Case("$ref-non-local", {"$ref": "https://example.com/s.json"}, "/$ref", None, "1",
         "ignores", "rejected", warns=True, judge=False),
    Case("$dynamicRef", {"$defs": {"a": I()}, "$dynamicRef": "#/$defs/a"}, "/$dynamicRef",
         "1", '"x"', "ignores", "rejected"),
    # -- annotations and unknown keywords ------------------------------------------------------
    Case("contentEncoding", S(contentEncoding="base64"), "/contentEncoding", '"YQ=="',
         '"!!"', "ignores", "ignored", judge=False),  # an annotation for jsonschema too
    Case("unknown-keyword", S(maxLenght=2), "/maxLenght", '"abc"', None, "ignores",
         "ignored"),
]
# fmt: on

CONSISTENT = {
    "enforced": {"enforces"},
    "validated": {"ignores", "enforces"},  # "enforces": the shape of a partly enforced format
    "ignored": {"ignores"},
    "rejected": {"raises", "refuses-valid", "ignores"},  # "ignores": fails open, so refused
}


def _accepts(grammar: xgr.Grammar, text: str) -> bool:
    matcher = xgr.GrammarMatcher(
        _COMPILER.compile_grammar(grammar), terminate_without_stop_token=True
    )
    return bool(matcher.accept_string(text)) and bool(matcher.is_terminated())


def _judges(case: Case) -> bool:
    """Whether jsonschema can judge the instances (remote refs, optional format packages)."""
    fmt_name = case.schema.get("format")
    return case.judge and (fmt_name is None or fmt_name in CHECKED)


@pytest.mark.parametrize("case", CASES, ids=[c.id + f"[{c.violating}]" for c in CASES])
def test_keyword(case: Case, capfd: pytest.CaptureFixture[str]) -> None:
    validator_cls = jsonschema.validators.validator_for(case.schema)
    validator = validator_cls(case.schema, format_checker=validator_cls.FORMAT_CHECKER)
    # the instances mean what the row says
    if case.valid is not None and case.judge:
        assert validator.is_valid(json.loads(case.valid)), "valid instance is not valid"
    if case.violating is not None and _judges(case):
        assert not validator.is_valid(json.loads(case.violating)), "violating instance is valid"

    capfd.readouterr()
    with warnings.catch_warnings(record=True) as python_warnings:
        warnings.simplefilter("always")
        try:
            grammar = xgr.Grammar.from_json_schema(
                json.dumps(case.schema), any_whitespace=True, max_whitespace_cnt=4
            )
        except Exception:
            grammar = None
    stderr = capfd.readouterr().err
    assert not python_warnings
    assert ("Warning" in stderr) == case.warns, stderr

    if grammar is None:
        behaviour = "raises"
    elif case.valid is not None and not _accepts(grammar, case.valid):
        behaviour = "refuses-valid"
    elif case.violating is not None and not _accepts(grammar, case.violating):
        behaviour = "enforces"
    else:
        behaviour = "ignores"
    assert behaviour == case.behaviour

    rows = [r for r in explain(case.schema) if r.at == case.at]
    assert len(rows) == 1, explain(case.schema)
    assert rows[0].status == case.status, rows[0]
    assert case.behaviour in CONSISTENT[case.status]


# keywords whose status can only be argued, not probed in isolation
_NOT_PROBED = {
    "additionalItems",
    "if",
    "else",
    "$recursiveRef",
    "contentMediaType",
    "contentSchema",
}


def test_every_keyword_of_the_table_is_probed() -> None:
    probed = {c.at.rsplit("/", 1)[1].replace("~1", "/").replace("~0", "~") for c in CASES}
    assert set(KEYWORDS) - probed - _NOT_PROBED == set()


# -- quirks: where xgrammar is narrower than JSON Schema (outputs stay valid) --------------
# fmt: off
QUIRKS = [
    # (schema, instance, xgrammar accepts, jsonschema accepts, why)
    (S(pattern="[0-9]"), '"a1b"', False, True, "pattern is matched as a whole string"),
    ({"type": "object", "patternProperties": {"^x_": I()}}, '{"x_a":1}', False, True,
     "patternProperties keys are matched as a whole string"),
    (S(maxLength=10), '"a\\nb"', False, True, "no escape sequences in a bounded string"),
    (S(pattern="^[a-z\\n]+$"), '"a\\nb"', False, True, "no escape sequences in a pattern"),
    (S(), '"a\\nb"', True, True, "an unbounded string has escapes"),
    (N(minimum=0), "1e2", False, True, "no exponent with bounds"),
    (N(minimum=0), "0.123456", True, True, "6 decimals with bounds"),
    (N(minimum=0), "0.1234567", False, True, "not 7"),
    (N(), "1e400", True, True, "exponents without bounds"),
    (N(minimum=0), "-0.0", False, True, "no negative zero"),
    (I(), "-0", False, True, "no negative zero integer"),
    (O(required=["a", "b"]), '{"b":2,"a":1}', False, True, "properties in declared order"),
    (O(), '{"a":1,"c":3}', False, True, "strict mode: no undeclared properties"),
    ({"type": "object"}, '{"c":3}', True, True, "…unless no object keyword is given"),
    ({"type": "object", "required": ["c"]}, '{"c":3}', False, True,
     "…but any object keyword turns strict mode on"),
    ({"type": "array"}, "[1]", True, True, "a bare array takes any items"),
    (O(required=["zz"], additionalProperties=True), '{"zz":1}', False, True,
     "an undeclared required name makes xgrammar demand a declared property"),
    ({"const": {"a": [1, 2]}}, '{"a": [1, 2]}', False, True, "const is generated compactly"),
    (O(), ' {"a":1}', False, True, "no leading whitespace"),
    (O(), '{"a":    1}', True, True, "whitespace runs up to max_whitespace_cnt=4"),
    (O(), '{"a":     1}', False, True, "…and no longer"),
]

# fmt: on


@pytest.mark.parametrize(
    ("schema", "instance", "accepted", "valid", "why"), QUIRKS, ids=[q[4] for q in QUIRKS]
)
def test_quirk(
    schema: dict[str, Any], instance: str, accepted: bool, valid: bool, why: str
) -> None:
    grammar = xgr.Grammar.from_json_schema(
        json.dumps(schema), any_whitespace=True, max_whitespace_cnt=4
    )
    assert _accepts(grammar, instance) is accepted
    assert jsonschema.Draft202012Validator(schema).is_valid(json.loads(instance)) is valid
