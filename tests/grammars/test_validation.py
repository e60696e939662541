"""validation_errors: every place jsonschema evaluates a regex runs on RE2.

The catastrophic cases run with Python's ``re`` taken away from jsonschema's modules, so a
regression fails at once (an AssertionError) instead of freezing the test process.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import jsonschema
import jsonschema._format
import jsonschema._keywords
import jsonschema._legacy_keywords
import jsonschema._utils
import pytest

from sgflow.grammars.validation import FORMATS, is_valid, validation_errors, validator_for

EVIL = "^(a|aa)+$"
HOSTILE = "a" * 64 + "b"
DRAFT7 = "http://json-schema.org/draft-07/schema#"
DRAFT2019 = "https://json-schema.org/draft/2019-09/schema"


class _NoPythonRe:
    """Stands in for the ``re`` module inside jsonschema: any use is a test failure."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"jsonschema used Python's re.{name} on a user pattern")


@pytest.fixture
def no_python_re(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (jsonschema._keywords, jsonschema._utils, jsonschema._legacy_keywords):
        monkeypatch.setattr(module, "re", _NoPythonRe())
    monkeypatch.setattr(jsonschema._format, "re", _NoPythonRe())


# fmt: off
# (where the pattern sits, schema, a value it must refuse, a value it must accept)
PLACES: list[tuple[str, dict[str, Any], Any, Any]] = [
    ("pattern", {"type": "string", "pattern": EVIL}, HOSTILE, "aaa"),
    ("patternProperties", {"type": "object", "patternProperties": {EVIL: {"type": "integer"}}},
     {"aaa": "x", HOSTILE: "ignored"}, {"aa": 1, HOSTILE: "not matched"}),
    ("additionalProperties", {"type": "object", "patternProperties": {EVIL: {}},
                              "additionalProperties": False}, {HOSTILE: 1}, {"aaaa": 1}),
    ("unevaluatedProperties", {"type": "object", "allOf": [{"patternProperties": {EVIL: {}}}],
                               "unevaluatedProperties": False}, {HOSTILE: 1}, {"aa": 1}),
    ("unevaluatedProperties 2019", {"$schema": DRAFT2019, "patternProperties": {EVIL: {}},
                                    "unevaluatedProperties": False}, {HOSTILE: 1}, {"a": 1}),
    ("propertyNames", {"type": "object", "propertyNames": {"pattern": EVIL}}, {HOSTILE: 1},
     {"aaa": 1}),
    ("draft-07", {"$schema": DRAFT7, "properties": {"x": {"pattern": EVIL}}}, {"x": HOSTILE},
     {"x": "a"}),
    ("a subschema naming another draft", {"$ref": "#/$defs/x", "$defs": {"x": {
        "$schema": DRAFT7, "pattern": EVIL}}}, HOSTILE, "aa"),
    ("format: regex", {"type": "string", "format": "regex"}, "(a", "^(a|aa)+$"),
]
# fmt: on


@pytest.mark.parametrize(
    ("schema", "refused", "accepted"), [p[1:] for p in PLACES], ids=[p[0] for p in PLACES]
)
@pytest.mark.usefixtures("no_python_re")
def test_every_regex_place_runs_on_re2(schema: dict[str, Any], refused: Any, accepted: Any) -> None:
    assert validation_errors(refused, schema)
    assert validation_errors(accepted, schema) == []
    assert is_valid(accepted, schema) and not is_valid(refused, schema)


@pytest.mark.usefixtures("no_python_re")
def test_messages_and_pointers() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": EVIL}},
        "patternProperties": {"^x-": {"type": "integer"}},
        "additionalProperties": False,
    }
    errors = validation_errors({"name": HOSTILE, "x-a/b": "s", "extra": 1}, schema)
    assert errors == [
        {"pointer": "/name", "message": f"{HOSTILE!r} does not match {EVIL!r}"},
        {"pointer": "/x-a~1b", "message": "'s' is not of type 'integer'"},
        {"pointer": "/", "message": "'extra' does not match any of the regexes: '^x-'"},
    ]


def test_a_pattern_re2_refuses_fails_closed() -> None:
    # checked schemas never hold one; an unchecked one must not pass values silently
    [error] = validation_errors("ab", {"pattern": "a(?=b)"})
    assert "cannot be evaluated" in error["message"]
    assert validation_errors({"k": 1}, {"patternProperties": {"(?=k)": {}}})


UNEVALUATED = [  # benign patterns: the stock implementation is the reference
    {"properties": {"a": {}}, "patternProperties": {"^p": {}}, "unevaluatedProperties": False},
    {"allOf": [{"properties": {"a": {}}}], "anyOf": [{"patternProperties": {"^b": {}}},
     {"required": ["zz"]}], "unevaluatedProperties": False},
    {"$ref": "#/$defs/base", "$defs": {"base": {"properties": {"a": {}}}},
     "unevaluatedProperties": {"type": "integer"}},
    {"if": {"required": ["a"]}, "then": {"properties": {"b": {}}},
     "else": {"properties": {"c": {}}}, "unevaluatedProperties": False},
    {"dependentSchemas": {"a": {"properties": {"d": {}}}}, "properties": {"a": {}},
     "unevaluatedProperties": False},
    {"properties": {"a": {}}, "additionalProperties": {"type": "string"},
     "unevaluatedProperties": False},
    {"oneOf": [{"properties": {"a": {"const": 1}}}, {"properties": {"b": {}}}],
     "unevaluatedProperties": False},
]  # fmt: skip
INSTANCES = [{}, {"a": 1}, {"b": 2}, {"c": 3}, {"p1": 1, "a": 1}, {"a": 1, "d": 4}, {"z": "s"},
             {"a": 1, "b": 2, "c": 3, "zz": 0}, {"bb": 1, "z": 2}]  # fmt: skip


@pytest.mark.parametrize("schema", UNEVALUATED)
def test_unevaluated_properties_agrees_with_jsonschema(schema: dict[str, Any]) -> None:
    stock = jsonschema.Draft202012Validator(schema)
    for instance in INSTANCES:
        assert is_valid(instance, schema) == stock.is_valid(instance), instance


@pytest.mark.parametrize(
    ("value", "iri", "reference"),
    [("https://例え.jp/パス?q=é#frag", True, True), ("http://ex.com/a b", False, False),
     ("a" * 50_000, False, True), ("http://" + "a" * 50_000 + "/x", True, True),
     ("http://ex.com/\ud800", False, False)],
)  # fmt: skip
def test_iri_formats_are_checked_in_linear_time(
    monkeypatch: pytest.MonkeyPatch, value: str, iri: bool, reference: bool
) -> None:
    def slow(*args: Any) -> bool:
        raise AssertionError("the Earley parser of rfc3987_syntax was used")

    monkeypatch.setattr(jsonschema._format, "_rfc3987_is_valid_syntax", slow, raising=False)
    assert is_valid(value, {"format": "iri"}) is iri
    assert is_valid(value, {"format": "iri-reference"}) is reference


def test_formats_are_checked_whatever_the_draft() -> None:
    assert validation_errors("2024-02-30", {"$schema": DRAFT7, "format": "date"})
    assert validation_errors("2024-02-29", {"format": "date"}) == []
    assert "regex" in FORMATS.checkers


class _Counter(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = b'{"type": "integer"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def schema_server() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/s.json"
    server.shutdown()


def test_remote_refs_are_never_fetched(schema_server: str) -> None:
    # the stock validator fetches http(s):// and file:// refs with urllib
    [error] = validation_errors("x", {"$ref": schema_server})
    assert error["pointer"] == "/"
    assert "does not resolve" in error["message"]
    assert _Counter.hits == 0
    assert not is_valid("x", {"$ref": "file:///etc/hostname"})


def test_deep_values_against_recursive_schemas_do_not_raise() -> None:
    tree = {"type": "array", "items": {"$ref": "#"}}
    value: list[Any] = []
    for _ in range(5000):
        value = [value]
    assert validation_errors(value, tree) == [
        {"pointer": "/", "message": "the value nests too deeply to validate"}
    ]
    assert not is_valid(value, tree)


def test_validator_for_keeps_the_declared_draft() -> None:
    validator = validator_for({"$schema": DRAFT7, "items": [{"type": "string"}]})
    assert validator.is_valid(["x"])  # the draft-7 array form of items
    assert validator_for({}).META_SCHEMA["$id"].endswith("2020-12/schema")


@pytest.mark.parametrize(
    ("items", "unique"),
    [
        ([1, 1.0], False),
        ([True, 1], True),
        ([False, 0, None], True),
        ([{"a": 1, "b": [1, 2]}, {"b": [1, 2.0], "a": 1}], False),
        ([[1], [True]], True),
        (["a", "b", "a"], False),
        ([{"k": i} for i in range(20_000)], True),
        ([{"k": i % 19_999} for i in range(20_000)], False),
    ],
    ids=[
        "int-float",
        "bool-int",
        "falsy",
        "objects-key-order",
        "nested-bool",
        "strings",
        "20k-objects",
        "20k-objects-one-repeat",
    ],
)
def test_unique_items_has_json_equality_in_one_pass(items: list[object], unique: bool) -> None:
    errors = validation_errors(items, {"type": "array", "uniqueItems": True})
    assert (not errors) == unique, errors
    assert all(len(e["message"]) < 200 for e in errors)  # never the repr of the whole array
