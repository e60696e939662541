"""explain(): every keyword occurrence of a nested schema gets its pointer and status."""

from __future__ import annotations

from typing import Any

from sgflow.grammars import (
    JsonSchema,
    KeywordReport,
    explain,
    format_report,
    get_grammar,
    list_grammars,
)

NESTED = {
    "type": "object",
    "title": "annotations are not reported",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"},
                 "uniqueItems": True},
        "pair": {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0}],
                 "items": False},
        "kind": {"anyOf": [{"const": "a"}, {"type": "integer", "multipleOf": 2}]},
        "one": {"oneOf": [{"type": "string", "minLength": 1}, {"type": "null"}]},
        "ref": {"$ref": "#/$defs/code", "maxLength": 3},
        "neg": {"not": {"type": "string", "minLength": 2}},
        "extra": {"type": "object", "additionalProperties": {"type": "number", "maximum": 9}},
    },
    "required": ["name"],
    "$defs": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
}  # fmt: skip


def rows(schema: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r.at, r.keyword, r.status) for r in explain(schema)]


def test_nested_schema_walk() -> None:
    assert rows(NESTED) == [
        ("/type", "type", "enforced"),
        ("/properties", "properties", "enforced"),
        ("/required", "required", "enforced"),
        ("/properties/name/type", "type", "enforced"),
        ("/properties/name/maxLength", "maxLength", "enforced"),
        ("/properties/tags/type", "type", "enforced"),
        ("/properties/tags/items", "items", "enforced"),
        ("/properties/tags/uniqueItems", "uniqueItems", "validated"),
        ("/properties/tags/items/type", "type", "enforced"),
        ("/properties/tags/items/pattern", "pattern", "enforced"),
        ("/properties/pair/type", "type", "enforced"),
        ("/properties/pair/prefixItems", "prefixItems", "enforced"),
        ("/properties/pair/items", "items", "enforced"),
        ("/properties/pair/prefixItems/0/type", "type", "enforced"),
        ("/properties/pair/prefixItems/0/minimum", "minimum", "enforced"),
        ("/properties/kind/anyOf", "anyOf", "enforced"),
        ("/properties/kind/anyOf/0/const", "const", "enforced"),
        ("/properties/kind/anyOf/1/type", "type", "enforced"),
        ("/properties/kind/anyOf/1/multipleOf", "multipleOf", "enforced"),
        ("/properties/one/oneOf", "oneOf", "validated"),
        # oneOf is generated as anyOf: each branch is still enforced
        ("/properties/one/oneOf/0/type", "type", "enforced"),
        ("/properties/one/oneOf/0/minLength", "minLength", "enforced"),
        ("/properties/one/oneOf/1/type", "type", "enforced"),
        ("/properties/ref/$ref", "$ref", "enforced"),
        ("/properties/ref/maxLength", "maxLength", "validated"),
        ("/properties/neg/not", "not", "validated"),
        # what sits under an ignored keyword cannot be enforced either
        ("/properties/neg/not/type", "type", "validated"),
        ("/properties/neg/not/minLength", "minLength", "validated"),
        ("/properties/extra/type", "type", "enforced"),
        ("/properties/extra/additionalProperties", "additionalProperties", "enforced"),
        ("/properties/extra/additionalProperties/type", "type", "enforced"),
        ("/properties/extra/additionalProperties/maximum", "maximum", "enforced"),
        ("/$defs/code/type", "type", "enforced"),
        ("/$defs/code/pattern", "pattern", "enforced"),
    ]


def test_pointers_are_escaped() -> None:
    schema = {"type": "object", "properties": {"a/b~c": {"type": "string", "minLength": 1}}}
    assert ("/properties/a~1b~0c/minLength", "minLength", "enforced") in rows(schema)


def test_rows_carry_notes_and_hints() -> None:
    (row,) = [r for r in explain({"type": "array", "minItems": 1}) if r.keyword == "minItems"]
    assert row == KeywordReport(
        "",
        "minItems",
        "rejected",
        "without `items`, xgrammar allows no items at all here",
        "add `items` (items: {} for any value)",
        "/minItems",
    )
    assert row.to_dict() == {
        "pointer": "",
        "keyword": "minItems",
        "status": "rejected",
        "note": "without `items`, xgrammar allows no items at all here",
        "at": "/minItems",
        "hint": "add `items` (items: {} for any value)",
    }


def test_enum_implies_what_its_values_satisfy() -> None:
    assert ("/type", "type", "enforced") in rows({"type": "string", "enum": ["a", "b"]})
    assert ("/maxLength", "maxLength", "validated") in rows(
        {"type": "string", "enum": ["a", "abc"], "maxLength": 2}
    )


def test_format_report_is_a_table() -> None:
    text = format_report(explain({"type": "string", "format": "bogus", "maxLength": 3}))
    lines = text.splitlines()
    assert lines[0].split() == ["pointer", "keyword", "status", "note"]
    assert lines[1].split()[:3] == ["/", "type", "enforced"]
    assert "ignored" in lines[2] and "'bogus'" in lines[2]
    assert format_report([]) == "(no constraint keywords)"


def test_library_schemas_are_fully_enforced() -> None:
    """The shipped schemas were written to the table: nothing is left to chance."""
    for info in list_grammars():
        if info.kind != "json_schema":
            continue
        spec = get_grammar(info.name)
        assert isinstance(spec, JsonSchema)
        report = explain(spec.schema)
        assert {r.status for r in report} <= {"enforced", "validated"}, info.name
        not_enforced = [(r.at, r.keyword) for r in report if r.status != "enforced"]
        # only format: date (impossible dates pass the grammar, jsonschema catches them)
        assert all(k == "format" for _, k in not_enforced), (info.name, not_enforced)
