"""Validation after generation: the draft a schema declares, formats, pointers."""

from __future__ import annotations

import pytest

from sgflow.grammars.validation import validation_errors

DRAFT7 = "http://json-schema.org/draft-07/schema#"


@pytest.mark.parametrize(
    ("schema", "value", "pointer"),
    [
        (
            {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}},
            {"n": 1},
            "/n",
        ),
        ({"type": "array", "uniqueItems": True}, [1, 1], "/"),
        ({"type": "string", "format": "date"}, "2024-02-30", "/"),
        ({"type": "string", "format": "date-time"}, "yesterday", "/"),
        ({"type": "string", "format": "email"}, "nope", "/"),
        ({"type": "number", "multipleOf": 0.5}, 0.3, "/"),
        # draft 7: `items` as an array is tuple validation (2020-12 calls it prefixItems)
        ({"$schema": DRAFT7, "type": "array", "items": [{"type": "string"}]}, [5], "/0"),
        ({"$schema": DRAFT7, "dependencies": {"a": ["b"]}}, {"a": 1}, "/"),
    ],
)
def test_invalid_values_are_caught_with_their_pointer(
    schema: dict, value: object, pointer: str
) -> None:
    errors = validation_errors(value, schema)
    assert errors and errors[0]["pointer"] == pointer, errors


def test_valid_values_pass_in_both_drafts() -> None:
    assert validation_errors([5], {"type": "array", "prefixItems": [{"type": "integer"}]}) == []
    assert validation_errors(["x"], {"$schema": DRAFT7, "items": [{"type": "string"}]}) == []
    assert validation_errors("2024-02-29", {"type": "string", "format": "date"}) == []
