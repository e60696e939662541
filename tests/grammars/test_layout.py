"""The JSON layouts: each accepts the whitespace it promises and nothing else.

The grammar is xgrammar's, built as the engine builds it (``compile_checked`` under the
limits' layout), and fed the value written out by ``json.dumps``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sgflow.grammars import JsonSchema, compile_checked, limits, match
from sgflow.grammars.layout import ANY_LAYOUT, DEFAULT_LAYOUT, LAYOUTS, JsonLayout

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}},
            "required": ["city", "zip"],
        },
        "active": {"type": "boolean"},
    },
    "required": ["name", "tags", "address", "active"],
}
VALUE: dict[str, Any] = {
    "name": "Ada  Lovelace",  # whitespace inside a string is the value's, in every layout
    "tags": ["math", "engines"],
    "address": {"city": "London", "zip": 12345},
    "active": True,
}
RENDERED = {
    "indent": json.dumps(VALUE, indent=2),
    "compact": json.dumps(VALUE),
    "spaced": json.dumps(VALUE, indent=1),  # free whitespace, each gap at most 4 characters
    "wide": json.dumps(VALUE, indent=4),  # a gap of 9 characters (newline, 8 spaces)
}
ACCEPTS = {  # layout: the renderings it accepts
    "indent": {"indent"},
    "compact": {"compact"},
    # not indent: its second level's gap is a newline and 4 spaces, one over the bound of 4
    "free": {"compact", "spaced"},
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_accepts_exactly_its_whitespace(layout: str) -> None:
    with limits(json_layout=layout):
        grammar = compile_checked(JsonSchema(SCHEMA))
    accepted = {name for name, text in RENDERED.items() if match(grammar, text).accepted}
    assert accepted == ACCEPTS[layout]


def test_indent_is_the_default_and_forces_the_text_between_values() -> None:
    assert DEFAULT_LAYOUT.name == "indent"
    grammar = compile_checked(JsonSchema(SCHEMA))
    text = RENDERED["indent"]
    cut = text.index('"London"')  # one space more before the value is refused
    assert not match(grammar, text[:cut] + " " + text[cut:]).accepted


def test_free_bounds_each_gap_and_any_layout_does_not() -> None:
    with limits(json_layout="free", max_json_whitespace=9):
        assert match(compile_checked(JsonSchema(SCHEMA)), RENDERED["wide"]).accepted
    grammar = compile_checked(JsonSchema(SCHEMA), layout=ANY_LAYOUT)
    assert all(match(grammar, text).accepted for text in RENDERED.values())


def test_layouts_are_cached_apart() -> None:
    indent = compile_checked(JsonSchema(SCHEMA))
    with limits(json_layout="compact"):
        compact = compile_checked(JsonSchema(SCHEMA))
    assert indent is not compact
    assert match(indent, RENDERED["indent"]).accepted
    assert not match(indent, RENDERED["compact"]).accepted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "pretty"}, "JSON layout must be one of indent, compact, free"),
        ({"name": "free", "max_whitespace": 0}, "max_whitespace must be positive"),
    ],
)
def test_a_bad_layout_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JsonLayout(**kwargs)
