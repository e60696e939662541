"""Catastrophic regexes (``regex_corpus.CORPUS``) in every place a regex goes.

Pure: input and output validation, ``check()`` of schemas and of regex constraints, the
enforcement report, each with Python's ``re`` taken away from jsonschema. Through the API
(a separate ``sgflow serve``): ``POST /v1/runs`` with an inline program whose inputs schema
carries the pattern (as ``pattern``, as ``patternProperties``, and as a ``format: regex``
input value), ``POST /v1/programs`` with the pattern in a step's schema, ``POST /v1/extract``
with few-shot examples whose outputs must match it. Each answer is a 4xx or 2xx within
``BOUND_S`` (the client's timeout), and the service answers ``/healthz`` afterwards.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sgflow.grammars import JsonSchema, Regex, check, explain
from sgflow.grammars.errors import escape_pointer
from sgflow.grammars.validation import validation_errors
from tests.adversarial.conftest import error_of
from tests.adversarial.regex_corpus import CORPUS, RegexCase

IDS = [c.name for c in CORPUS]
ACCEPTED = [c for c in CORPUS if c.refused is None]


def test_the_corpus_is_large_and_mixed() -> None:
    assert len(CORPUS) >= 30
    assert len(ACCEPTED) >= 20 and len(CORPUS) - len(ACCEPTED) >= 10
    assert len({c.name for c in CORPUS}) == len(CORPUS)


def string_schema(pattern: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"s": {"type": "string", "pattern": pattern}},
        "required": ["s"],
    }


def keys_schema(pattern: str) -> dict[str, Any]:
    return {
        "type": "object",
        "patternProperties": {pattern: {"type": "integer"}},
        "additionalProperties": False,
    }


# -- pure -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
@pytest.mark.usefixtures("no_python_re")
def test_validation(case: RegexCase) -> None:
    inputs = validation_errors({"s": case.hostile}, string_schema(case.pattern))
    keys = validation_errors({case.hostile: 1}, keys_schema(case.pattern))
    unevaluated = validation_errors(
        {case.hostile: 1},
        {"allOf": [{"patternProperties": {case.pattern: {}}}], "unevaluatedProperties": False},
    )
    validation_errors(case.pattern, {"type": "string", "format": "regex"})
    if case.refused is None:
        assert (inputs == []) is case.matches
        assert (keys == []) is case.matches
        assert (unevaluated == []) is case.matches


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_check(case: RegexCase) -> None:
    schema = check(JsonSchema(string_schema(case.pattern)))
    assert [e.code for e in schema][:1] == ([case.refused] if case.refused else [])
    if schema:
        assert schema[0].pointer == "/properties/s/pattern"
        assert "(at character " in schema[0].message and schema[0].hint
    keys = check(JsonSchema(keys_schema(case.pattern)))
    assert [e.code for e in keys][:1] == ([case.refused] if case.refused else [])
    # a regex constraint is only read by xgrammar: what xgrammar refuses is refused
    constraint = check(Regex(case.pattern))
    if case.refused in ("grammar.unsupported", "grammar.invalid_regex"):
        assert constraint and constraint[0].code == case.refused


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
@pytest.mark.usefixtures("no_python_re")
def test_enforcement_report(case: RegexCase) -> None:
    covered = explain(
        {"type": "object", "patternProperties": {case.pattern: {}}, "required": [case.hostile]}
    )
    required = next(r for r in covered if r.keyword == "required")
    # a required key no pattern covers (a full match) cannot be generated: refused
    if case.refused is None:
        assert required.status == ("enforced" if case.matches else "rejected")
    listed = explain({"type": "string", "pattern": case.pattern, "enum": [case.hostile]})
    assert any(r.keyword == "pattern" for r in listed)


# -- through the API --------------------------------------------------------------------------


def inline(inputs_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "program": "adversary",
        "version": 1,
        "inputs": inputs_schema,
        "steps": [{"id": "a", "user": "hi", "gen": {"max_tokens": 8}}],
    }


def run(api: httpx.Client, schema: dict[str, Any], inputs: dict[str, Any]) -> httpx.Response:
    # priority 99 is refused after the inputs were validated: no run is ever created, and
    # "/priority" in the answer says the inputs passed
    body = {"program": inline(schema), "inputs": inputs, "priority": 99}
    return api.post("/v1/runs", json=body)


def expect_run(response: httpx.Response, case: RegexCase, at: str, input_field: str) -> None:
    assert response.status_code == 422, response.text
    error = error_of(response)
    if case.refused is not None:
        assert (error["code"], error["field"]) == (case.refused, at)
    elif case.matches:
        assert (error["code"], error["field"]) == ("request.invalid", "/priority")
    else:
        assert (error["code"], error["field"]) == ("input.invalid", input_field)


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_runs_inputs_pattern(api: httpx.Client, case: RegexCase) -> None:
    r = run(api, string_schema(case.pattern), {"s": case.hostile})
    expect_run(r, case, "/program/inputs/properties/s/pattern", "/inputs/s")


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_runs_inputs_pattern_properties(api: httpx.Client, case: RegexCase) -> None:
    r = run(api, keys_schema(case.pattern), {case.hostile: 1})
    at = f"/program/inputs/patternProperties/{escape_pointer(case.pattern)}"
    expect_run(r, case, at, "/inputs")


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_runs_format_regex_value(api: httpx.Client, case: RegexCase) -> None:
    schema = {"type": "object", "properties": {"r": {"type": "string", "format": "regex"}}}
    r = run(api, schema, {"r": case.pattern})
    assert r.status_code == 422, r.text
    error = error_of(r)
    if case.refused is None:  # a regex RE2 evaluates: the inputs are valid
        assert (error["code"], error["field"]) == ("request.invalid", "/priority")
    elif case.refused != "grammar.unsupported":  # RE2 cannot compile it: not a regex
        assert (error["code"], error["field"]) == ("input.invalid", "/inputs/r")


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_programs(api: httpx.Client, case: RegexCase) -> None:
    program = {
        "program": f"adversary-{CORPUS.index(case)}",
        "version": 1,
        "steps": [
            {"id": "a", "user": "hi", "gen": {"json_schema": string_schema(case.pattern)}},
        ],
    }
    r = api.post("/v1/programs", json=program)
    if case.refused is None:
        assert r.status_code in (200, 201), r.text
        return
    assert r.status_code == 422, r.text
    error = error_of(r)
    assert error["code"] == case.refused
    assert error["field"] == "/steps/0/gen/json_schema/properties/s/pattern"


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_extract_examples(api: httpx.Client, case: RegexCase) -> None:
    body = {
        "schema": string_schema(case.pattern),
        "text": "x",
        "examples": [{"text": "x", "output": {"s": case.hostile}}],
        "timeout_s": 0,  # no worker runs here: a valid request answers 202 at once
    }
    r = api.post("/v1/extract", json=body)
    if case.refused is not None:
        assert r.status_code == 422, r.text
        error = error_of(r)
        assert (error["code"], error["field"]) == (case.refused, "/schema/properties/s/pattern")
    elif case.matches:
        assert r.status_code == 202, r.text
    else:
        assert r.status_code == 422, r.text
        error = error_of(r)
        assert (error["code"], error["field"]) == ("input.invalid", "/examples/0/output/s")
