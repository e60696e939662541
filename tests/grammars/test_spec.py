"""Specs: kinds, stable content hashes, SGLang sampling params."""

from __future__ import annotations

import json
import re

import pytest

from sgflow.grammars import Choices, Ebnf, JsonSchema, Named, Regex, check, compile_checked, match
from sgflow.grammars.spec import choices_regex, escape_regex


def test_kinds() -> None:
    assert [s.kind for s in (Regex("a"), JsonSchema({}), Ebnf('root ::= "a"'))] == [
        "regex",
        "json_schema",
        "ebnf",
    ]
    assert Choices(["a"]).kind == "choices"
    assert Named("yes-no").kind == "named"


def test_sampling_params() -> None:
    schema = {"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "string"}}}
    assert Regex("(a|b)").to_sampling_params() == {"regex": "(a|b)"}
    assert Ebnf('root ::= "x"').to_sampling_params() == {"ebnf": 'root ::= "x"'}
    params = JsonSchema(schema).to_sampling_params()
    assert json.loads(params["json_schema"]) == schema
    # property order is kept: xgrammar generates properties in this order
    assert list(json.loads(params["json_schema"])["properties"]) == ["b", "a"]
    assert Choices(["yes", "no"]).to_sampling_params() == {"regex": "(yes|no)"}
    assert Named("yes-no").to_sampling_params() == {"regex": "(yes|no)"}


def test_content_hash_is_stable_and_kind_sensitive() -> None:
    assert Regex("abc").content_hash() == Regex("abc").content_hash()
    assert Regex("abc").content_hash() != Ebnf("abc").content_hash()
    assert len(Regex("abc").content_hash()) == 64
    # pinned: a change of the hashing scheme invalidates every cache keyed by it
    assert Regex("abc").content_hash() == (
        "6b118def20b3fff3fbb69611b16e5513e930070f1cf00142b2079c1d7d6dbf9b"
    )
    a = JsonSchema({"type": "object", "properties": {"a": {}, "b": {}}})
    b = JsonSchema({"type": "object", "properties": {"b": {}, "a": {}}})
    assert a.content_hash() != b.content_hash()  # different generation order
    assert hash(a) == hash(JsonSchema({"type": "object", "properties": {"a": {}, "b": {}}}))


def test_specs_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Regex("a").pattern = "b"  # type: ignore[misc]


OPTIONS = ["very positive", "a+b", "C#", "50% off", "[x]", "tab\there", "new\nline", "é", "a|b"]


@pytest.mark.parametrize("option", OPTIONS)
def test_choices_escape_for_xgrammar_and_python(option: str) -> None:
    pattern = choices_regex([option, "other"])
    assert re.fullmatch(pattern, option)
    grammar = compile_checked(Regex(pattern))
    assert match(grammar, option).accepted
    assert not match(grammar, option + "x").accepted


def test_escape_regex_escapes_only_metacharacters() -> None:
    # re.escape would write "\ " and "\#", which xgrammar accepts but warns about on stderr
    assert escape_regex("a b#c") == "a b#c"
    assert escape_regex("1.5*(x)") == r"1\.5\*\(x\)"
    assert escape_regex("\x01") == r"\x01"


def test_choices_are_checked() -> None:
    assert check(Choices(["yes", "no"])) == []
    assert [(e.code, e.pointer) for e in check(Choices(["a", "a", ""]))] == [
        ("grammar.invalid_choices", "/1"),
        ("grammar.invalid_choices", "/2"),
    ]
