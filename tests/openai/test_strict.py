"""OpenAI's strict subset: what ``strict: true`` accepts, table-tested with the schemas the
real SDK generates from pydantic models and with OpenAI's own structured-outputs examples."""

from __future__ import annotations

import datetime
import enum
import json
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
from pydantic import BaseModel, Field, HttpUrl

from sgflow.grammars import check
from sgflow.grammars.spec import JsonSchema
from sgflow.grammars.validation import validation_errors
from sgflow.openai.strict import StrictProblem, check_strict, normalize_strict, strict_error
from tests.openai.sdk import sdk_response_format

SCHEMAS = Path(__file__).parent / "schemas"
COOKBOOK: dict[str, Any] = json.loads((SCHEMAS / "cookbook.json").read_text())


# -- pydantic models the SDK turns into strict schemas ------------------------------------------


class Step(BaseModel):
    explanation: str
    output: str


class MathReasoning(BaseModel):
    steps: list[Step]
    final_answer: str


class Category(str, enum.Enum):  # noqa: UP042 (the SDK docs' spelling)
    violence = "violence"
    sexual = "sexual"
    self_harm = "self_harm"


class ContentCompliance(BaseModel):
    is_violating: bool
    category: Optional[Category]  # noqa: UP045 (the SDK docs' spelling)
    explanation_if_violating: str | None


class UI(BaseModel):
    type: Literal["div", "button", "header", "section", "field", "form"]
    label: str
    children: list[UI]


class Node(BaseModel):
    """A tree whose root is itself recursive."""

    label: str = Field(min_length=1, max_length=20, pattern="^[a-z]+$")
    weight: int = Field(ge=0, le=10)
    when: datetime.date
    children: list[Node]


class Concept(BaseModel):
    title: str
    description: str


class ArticleSummary(BaseModel):
    invented_year: int
    summary: str
    inventors: list[str]
    concepts: list[Concept]
    tags: list[str] = []
    score: int | str = 0


class Counts(BaseModel):
    counts: dict[str, int]


class Link(BaseModel):
    url: HttpUrl


@pytest.mark.parametrize(
    "model", [MathReasoning, ContentCompliance, UI, Node, ArticleSummary], ids=lambda m: m.__name__
)
def test_every_schema_the_sdk_generates_from_these_models_is_inside_the_subset(model: type) -> None:
    fmt = sdk_response_format(model)
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert check_strict(schema) == []
    assert check(JsonSchema(normalize_strict(schema))) == [], "sgflow must enforce it too"


@pytest.mark.parametrize(
    ("model", "keyword", "reason"),
    [
        (Counts, "additionalProperties", "required to be supplied and to be false"),
        (Link, "format", "format 'uri' is not permitted"),
    ],
    ids=["Dict[str, int]", "HttpUrl"],
)
def test_sdk_schemas_outside_the_subset_are_refused_naming_the_keyword(
    model: type, keyword: str, reason: str
) -> None:
    problems = check_strict(sdk_response_format(model)["json_schema"]["schema"])
    assert problems and problems[0].keyword == keyword
    assert reason in problems[0].reason
    assert problems[0].pointer.startswith("/properties/")


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("sdk-*.json")), ids=lambda p: p.stem)
def test_the_sdk_schemas_recorded_in_the_research_are_accepted(path: Path) -> None:
    schema = json.loads(path.read_text())["json_schema"]["schema"]
    assert check_strict(schema) == []


@pytest.mark.parametrize("name", sorted(COOKBOOK))
def test_openais_own_examples_are_accepted_and_enforceable(name: str) -> None:
    schema = COOKBOOK[name]
    assert check_strict(schema) == []
    assert check(JsonSchema(normalize_strict(schema))) == []


def test_a_nullable_enum_allows_null_as_openai_reads_it() -> None:
    schema = COOKBOOK["content_compliance"]
    answer = {"is_violating": False, "category": None, "explanation_if_violating": None}
    assert validation_errors(answer, schema), "JSON Schema itself refuses null there"
    assert validation_errors(answer, normalize_strict(schema)) == []
    assert schema["properties"]["category"]["enum"] == ["violence", "sexual", "self_harm"]


def _obj(**props: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def _deep(levels: int) -> dict[str, Any]:
    schema = _obj(leaf={"type": "string"})
    for _ in range(levels - 1):
        schema = _obj(child=schema)
    return schema


REFUSED: list[tuple[str, Any, str, str]] = [
    # (id, schema, keyword, pointer)
    ("allOf", _obj(a={"allOf": [{"type": "string"}]}), "allOf", "/properties/a"),
    ("oneOf", _obj(a={"oneOf": [{"type": "string"}, {"type": "null"}]}), "oneOf", "/properties/a"),
    ("not", _obj(a={"type": "string", "not": {"const": "x"}}), "not", "/properties/a"),
    ("if", _obj(a={"type": "string", "if": {}, "then": {}}), "if", "/properties/a"),
    (
        "patternProperties",
        {**_obj(), "patternProperties": {"^x": {"type": "string"}}},
        "patternProperties",
        "",
    ),
    ("propertyNames", {**_obj(), "propertyNames": {"maxLength": 3}}, "propertyNames", ""),
    ("minProperties", {**_obj(), "minProperties": 1}, "minProperties", ""),
    (
        "uniqueItems",
        _obj(a={"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
        "uniqueItems",
        "/properties/a",
    ),
    (
        "contains",
        _obj(a={"type": "array", "items": {"type": "string"}, "contains": {"const": "x"}}),
        "contains",
        "/properties/a",
    ),
    (
        "no additionalProperties",
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        "additionalProperties",
        "",
    ),
    (
        "additionalProperties true",
        {**_obj(a={"type": "string"}), "additionalProperties": True},
        "additionalProperties",
        "",
    ),
    (
        "optional property",
        {**_obj(a={"type": "string"}, b={"type": "string"}), "required": ["a"]},
        "required",
        "",
    ),
    ("no properties", {"type": "object", "additionalProperties": False}, "properties", ""),
    ("root anyOf", {"anyOf": [_obj(a={"type": "string"}), _obj()]}, "anyOf", ""),
    ("root string", {"type": "string"}, "type", ""),
    ("no type", _obj(a={}), "type", "/properties/a"),
    ("unknown keyword", _obj(a={"type": "string", "x-foo": 1}), "x-foo", "/properties/a"),
    ("format uri", _obj(a={"type": "string", "format": "uri"}), "format", "/properties/a"),
    ("remote $ref", _obj(a={"$ref": "other.json#/x"}), "$ref", "/properties/a"),
    (
        "$ref with a type beside it",
        {**_obj(a={"$ref": "#/$defs/s", "type": "string"}), "$defs": {"s": {"type": "string"}}},
        "$ref",
        "/properties/a",
    ),
    ("11 levels", _deep(11), "properties", "/properties/child" * 10),
    (
        "1001 enum values",
        _obj(a={"type": "integer", "enum": list(range(1001))}),
        "enum",
        "",
    ),
    (
        "large string enum",
        _obj(a={"type": "string", "enum": [f"{i:060d}" for i in range(251)]}),
        "enum",
        "/properties/a",
    ),
    (
        "5001 properties",
        _obj(**{f"p{i}": {"type": "integer"} for i in range(5001)}),
        "properties",
        "",
    ),
]


@pytest.mark.parametrize(
    ("schema", "keyword", "pointer"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_schemas_outside_the_subset_are_refused_with_keyword_and_place(
    schema: Any, keyword: str, pointer: str
) -> None:
    problems = check_strict(schema)
    assert (keyword, pointer) in [(p.keyword, p.pointer) for p in problems], problems


ACCEPTED: list[tuple[str, Any]] = [
    ("10 levels", _deep(10)),
    ("type list with null", _obj(a={"type": ["string", "null"]})),
    ("anyOf with null", _obj(a={"anyOf": [{"type": "string"}, {"type": "null"}]})),
    ("const", _obj(a={"const": "fixed"})),
    (
        "string keywords",
        _obj(a={"type": "string", "pattern": "^[a-z]+$", "minLength": 1, "maxLength": 9}),
    ),
    (
        "every format",
        _obj(
            **{
                f"f{i}": {"type": "string", "format": f}
                for i, f in enumerate(
                    [
                        "date-time",
                        "time",
                        "date",
                        "duration",
                        "email",
                        "hostname",
                        "ipv4",
                        "ipv6",
                        "uuid",
                    ]
                )
            }
        ),
    ),
    (
        "number keywords",
        _obj(
            a={
                "type": "number",
                "minimum": 0,
                "maximum": 5,
                "exclusiveMinimum": -1,
                "exclusiveMaximum": 6,
                "multipleOf": 0.5,
            }
        ),
    ),
    (
        "array keywords",
        _obj(a={"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}),
    ),
    (
        "annotations",
        {
            **_obj(a={"type": "string", "title": "A", "description": "d", "default": "x"}),
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "T",
        },
    ),
    (
        "$ref with a description beside it",
        {**_obj(a={"$ref": "#/$defs/s", "description": "d"}), "$defs": {"s": {"type": "string"}}},
    ),
    (
        "definitions",
        {**_obj(a={"$ref": "#/definitions/s"}), "definitions": {"s": {"type": "string"}}},
    ),
    ("1000 enum values", _obj(a={"type": "integer", "enum": list(range(1000))})),
]


@pytest.mark.parametrize("schema", [a[1] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_schemas_inside_the_subset_are_accepted(schema: Any) -> None:
    assert check_strict(schema) == []


def test_the_error_is_openais_400_naming_the_keyword_the_place_and_the_param() -> None:
    problems = check_strict(_obj(a=_obj(b={"type": "string", "allOf": []})))
    err = strict_error(
        problems,
        what="response_format 'Person'",
        field="/response_format/json_schema/schema",
        param="response_format",
    )
    assert err.status == 400 and err.code == "openai.invalid_json_schema"
    assert err.message == (
        "Invalid schema for response_format 'Person': In context=('properties', 'a', "
        "'properties', 'b'), 'allOf' is not permitted."
    )
    assert err.field == "/response_format/json_schema/schema/properties/a/properties/b"
    assert err.extra["param"] == "response_format" and err.extra["keyword"] == "allOf"
    assert err.extra["openai_code"] == "invalid_json_schema"


def test_a_problem_at_the_root_has_an_empty_context() -> None:
    assert StrictProblem("", "type", "x").context == "()"
    assert StrictProblem("/items/anyOf/0", "type", "x").context == "('items', 'anyOf', 0)"


def test_garbage_is_refused_not_raised() -> None:
    assert check_strict(["not", "a", "schema"])[0].keyword == "type"
    assert check_strict(_obj(a=5))[0].pointer == "/properties/a"
