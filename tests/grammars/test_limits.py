"""Limits are data: defaults, environment variables, setter and context manager."""

from __future__ import annotations

import dataclasses

import pytest

from sgflow.grammars import JsonSchema, Limits, Regex, check, get_limits, limits, set_limits

DEFAULTS = {
    "max_schema_depth": 32,
    "max_schema_bytes": 100_000,
    "max_enum_size": 1000,
    "max_regex_chars": 4096,
    "max_ebnf_chars": 50_000,
    "compile_timeout_s": 10.0,
    "max_json_whitespace": 4,
    "allow_recursive_refs": True,
    "max_regex_memory": 1 << 20,
    "max_schema_branches": 256,
    "json_layout": "indent",
}


def test_defaults() -> None:
    assert dataclasses.asdict(Limits()) == DEFAULTS


def test_every_field_reads_its_environment_variable() -> None:
    env = {
        "SGFLOW_MAX_SCHEMA_DEPTH": "64",
        "SGFLOW_MAX_SCHEMA_BYTES": "2000",
        "SGFLOW_MAX_ENUM_SIZE": "10",
        "SGFLOW_MAX_REGEX_CHARS": "100",
        "SGFLOW_MAX_EBNF_CHARS": "300",
        "SGFLOW_COMPILE_TIMEOUT_S": "0.5",
        "SGFLOW_MAX_JSON_WHITESPACE": "2",
        "SGFLOW_ALLOW_RECURSIVE_REFS": "false",
        "SGFLOW_MAX_REGEX_MEMORY": "65536",
        "SGFLOW_MAX_SCHEMA_BRANCHES": "8",
        "SGFLOW_JSON_LAYOUT": "free",
    }
    assert Limits.from_env(env) == Limits(64, 2000, 10, 100, 300, 0.5, 2, False, 65536, 8, "free")
    assert Limits.from_env(env).layout.xgrammar_options() == {
        "any_whitespace": True,
        "max_whitespace_cnt": 2,
    }
    assert Limits.from_env({}) == Limits()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SGFLOW_MAX_ENUM_SIZE": "many"}, "SGFLOW_MAX_ENUM_SIZE='many' is not an integer"),
        ({"SGFLOW_COMPILE_TIMEOUT_S": "soon"}, "SGFLOW_COMPILE_TIMEOUT_S='soon' is not a number"),
        ({"SGFLOW_ALLOW_RECURSIVE_REFS": "maybe"}, "is not a boolean"),
        ({"SGFLOW_MAX_REGEX_CHARS": "0"}, "max_regex_chars must be a positive number"),
        ({"SGFLOW_JSON_LAYOUT": "pretty"}, "JSON layout must be one of indent, compact, free"),
    ],
)
def test_a_bad_environment_value_fails_loudly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits.from_env(env)


def test_context_manager_changes_and_restores() -> None:
    before = get_limits()
    with limits(max_regex_chars=5) as inside:
        assert inside.max_regex_chars == 5
        assert get_limits() is inside
        assert [e.code for e in check(Regex("abcdef"))] == ["limit.regex_size"]
    assert get_limits() is before
    assert check(Regex("abcdef")) == []


def test_context_manager_restores_after_an_error() -> None:
    before = get_limits()
    with pytest.raises(RuntimeError), limits(max_enum_size=1):
        raise RuntimeError("boom")
    assert get_limits() is before


def test_set_limits_is_process_wide() -> None:
    before = get_limits()
    try:
        assert set_limits(max_schema_depth=1).max_schema_depth == 1
        deep = {"type": "array", "items": {"type": "array", "items": {"type": "array"}}}
        assert [e.code for e in check(JsonSchema(deep))] == ["limit.schema_depth"]
    finally:
        set_limits(**dataclasses.asdict(before))


def test_unknown_or_invalid_fields_are_refused() -> None:
    with pytest.raises(TypeError):
        set_limits(max_tokens=5)
    with pytest.raises(ValueError, match="must be a positive number"):
        Limits(compile_timeout_s=-1)
