"""The named grammars: each compiles, and its examples agree with xgrammar and with an
independent checker (re.fullmatch, jsonschema, sqlite, Python's parser)."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import sqlite3
import tomllib
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from sgflow.grammars import (
    Ebnf,
    GrammarError,
    JsonSchema,
    Named,
    Regex,
    check,
    compile_checked,
    get_grammar,
    list_grammars,
    match,
    resolve_ref,
)
from sgflow.grammars.layout import ANY_LAYOUT
from sgflow.grammars.library import grammar_source

GRAMMARS = list_grammars()
NAMES = [g.name for g in GRAMMARS]
FOLDER = resources.files("sgflow.grammars").joinpath("library")
REQUIRED = {
    "iso-date", "iso-time", "iso-datetime", "email", "url", "uuid", "phone-e164", "semver",
    "money-amount", "yes-no", "sentiment", "sql-select", "arithmetic", "person", "address",
    "invoice", "invoice-result",
}  # fmt: skip


def test_the_library_has_the_required_grammars() -> None:
    assert set(NAMES) >= REQUIRED
    assert len(NAMES) >= 15


@pytest.mark.parametrize("info", GRAMMARS, ids=NAMES)
def test_grammar_compiles_and_matches_its_examples(info: object) -> None:
    from sgflow.grammars import GrammarInfo

    assert isinstance(info, GrammarInfo)
    assert check(Named(info.name)) == []
    assert info.examples_valid and info.examples_invalid, "every grammar documents examples"
    grammar = compile_checked(Named(info.name), layout=ANY_LAYOUT)  # examples: any layout
    for text in info.examples_valid:
        assert match(grammar, text).accepted, f"{info.name} refuses {text!r}"
    for text in info.examples_invalid:
        assert not match(grammar, text).accepted, f"{info.name} accepts {text!r}"


@pytest.mark.parametrize("info", [g for g in GRAMMARS if g.kind == "regex"], ids=lambda g: g.name)
def test_regex_examples_agree_with_python(info: object) -> None:
    spec = get_grammar(info.name)  # type: ignore[attr-defined]
    assert isinstance(spec, Regex)
    for text in info.examples_valid:  # type: ignore[attr-defined]
        assert re.fullmatch(spec.pattern, text), text
    for text in info.examples_invalid:  # type: ignore[attr-defined]
        assert not re.fullmatch(spec.pattern, text), text


@pytest.mark.parametrize(
    "info", [g for g in GRAMMARS if g.kind == "json_schema"], ids=lambda g: g.name
)
def test_schema_examples_agree_with_jsonschema(info: object) -> None:
    spec = get_grammar(info.name)  # type: ignore[attr-defined]
    assert isinstance(spec, JsonSchema)
    cls = jsonschema.validators.validator_for(spec.schema)
    cls.check_schema(spec.schema)
    validator = cls(spec.schema, format_checker=cls.FORMAT_CHECKER)
    for text in info.examples_valid:  # type: ignore[attr-defined]
        assert validator.is_valid(json.loads(text)), text
    for text in info.examples_invalid:  # type: ignore[attr-defined]
        assert not validator.is_valid(json.loads(text)), text


def test_sql_examples_run_on_sqlite() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE users (name TEXT, age INTEGER, city TEXT)")
    db.execute("CREATE TABLE orders (total REAL)")
    (info,) = [g for g in GRAMMARS if g.name == "sql-select"]
    for text in info.examples_valid:
        db.execute(text).fetchall()


def test_arithmetic_examples_are_python_expressions() -> None:
    (info,) = [g for g in GRAMMARS if g.name == "arithmetic"]
    for text in info.examples_valid:
        tree = ast.parse(text, mode="eval")
        assert {type(n) for n in ast.walk(tree)} <= {
            ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub, ast.Mult,
            ast.Div, ast.USub,
        }  # fmt: skip


def test_arithmetic_repetition_is_bounded() -> None:
    grammar = compile_checked(Named("arithmetic"))
    assert match(grammar, " + ".join(["1"] * 7)).accepted
    assert not match(grammar, " + ".join(["1"] * 8)).accepted
    assert match(grammar, "((1))").accepted
    assert not match(grammar, "(((1)))").accepted


@pytest.mark.parametrize("name", [g.name for g in GRAMMARS if g.kind == "ebnf"])
def test_ebnf_files_start_with_a_comment(name: str) -> None:
    source = grammar_source(name)
    assert source.startswith(f"# {name}:")
    assert isinstance(get_grammar(name), Ebnf)


def test_index_and_files_agree() -> None:
    listed = {g.file for g in GRAMMARS}
    on_disk = {p.name for p in FOLDER.iterdir() if p.name != "index.json"}
    assert listed == on_disk
    for g in GRAMMARS:
        suffix = {"regex": ".regex", "ebnf": ".ebnf", "json_schema": ".schema.json"}[g.kind]
        assert g.file == g.name + suffix
        assert g.description


def test_package_data_patterns_cover_the_library() -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    patterns = [p for ps in data.values() for p in ps]
    for entry in FOLDER.iterdir():
        assert any(fnmatch.fnmatch(entry.name, p) for p in patterns), entry.name


def test_regex_files_hold_one_line() -> None:
    for g in GRAMMARS:
        if g.kind == "regex":
            spec = get_grammar(g.name)
            assert isinstance(spec, Regex)
            assert "\n" not in spec.pattern


def test_unknown_name() -> None:
    with pytest.raises(GrammarError, match="no library grammar is named 'nope'") as info:
        get_grammar("nope")
    assert info.value.code == "grammar.unknown_name"
    assert "iso-date" in info.value.hint


def test_resolve_ref() -> None:
    invoice = resolve_ref("grammars/library/invoice.schema.json")
    assert invoice == get_grammar("invoice").schema  # type: ignore[union-attr]
    assert resolve_ref("./grammars/library/invoice.schema.json") == invoice
    assert resolve_ref("sgflow/grammars/library/invoice.schema.json") == invoice
    invoice["title"] = "changed"  # a fresh copy each time
    assert resolve_ref("grammars/library/invoice.schema.json")["title"] == "invoice"
    for bad in ("grammars/library/nope.schema.json", "grammars/library/iso-date.regex",
                "grammars/library/../../pyproject.toml", "invoice.schema.json"):  # fmt: skip
        with pytest.raises(GrammarError, match="names no library schema"):
            resolve_ref(bad)


def test_library_refs_are_inlined() -> None:
    raw = json.loads(FOLDER.joinpath("invoice-result.schema.json").read_text())
    assert raw["properties"]["fields"]["anyOf"][0] == {
        "$ref": "grammars/library/invoice.schema.json"
    }
    result = get_grammar("invoice-result").schema  # type: ignore[union-attr]
    fields = result["properties"]["fields"]["anyOf"][0]
    assert "$ref" not in json.dumps(result)
    assert fields["title"] == "invoice" and "$schema" not in fields
