"""The bounded JSON/YAML loader: a table of hostile documents, each refused with its code,
pointer and limit, and what stays accepted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sgflow.jsonbounds import CODES, MAX_DEPTH, JsonBoundsError, load_yaml, loads


def nested(depth: int, *, kind: str = "[") -> str:
    if kind == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


ZERO_PATH = "/0" * MAX_DEPTH

# fmt: off
# (id, document, code, pointer, limit)
REFUSED: list[tuple[str, str | bytes, str, str | None, int | None]] = [
    ("depth-just-past", nested(MAX_DEPTH + 1), "limit.json_depth", ZERO_PATH, MAX_DEPTH),
    ("depth-20000", nested(20_000), "limit.json_depth", ZERO_PATH, MAX_DEPTH),
    ("depth-objects", nested(MAX_DEPTH + 1, kind="{"), "limit.json_depth", "/a" * MAX_DEPTH,
     MAX_DEPTH),
    ("depth-mixed-path", '{"x": [0, {"a/b": ' + nested(MAX_DEPTH) + "}]}", "limit.json_depth",
     "/x/1/a~1b" + "/0" * (MAX_DEPTH - 3), MAX_DEPTH),
    ("int-4301-digits", "9" * 4301, "limit.json_number", "", 100),
    ("int-past-limit", '{"n": [-' + "1" * 101 + "]}", "limit.json_number", "/n/0", 100),
    ("nan", "[1, NaN]", "json.non_finite", "/1", None),
    ("infinity", '{"x": Infinity}', "json.non_finite", "/x", None),
    ("minus-infinity", "-Infinity", "json.non_finite", "", None),
    ("overflow-1e999", '{"a": [1e999]}', "json.non_finite", "/a/0", None),
    ("lone-high-surrogate", '["\\ud800"]', "json.lone_surrogate", "/0", None),
    ("lone-low-surrogate", '{"k": "x\\udc00y"}', "json.lone_surrogate", "/k", None),
    ("lone-surrogate-key", '{"\\udfff": 1}', "json.lone_surrogate", "/\udfff", None),
    ("raw-surrogate-in-str", '"\ud800"', "json.lone_surrogate", "", None),
    ("duplicate-key", '{"a": 1, "b": {"c": 1, "c": 2}}', "json.duplicate_key", "/b/c", None),
    ("duplicate-key-first", '{"a": 1, "a": 1}', "json.duplicate_key", "/a", None),
    ("syntax", '{"a": }', "request.malformed_json", "", None),
    ("empty", "", "request.malformed_json", "", None),
    ("not-utf8", b'{"a": "\xff"}', "request.malformed_json", "", None),
    ("overlong-utf8", b'"\xc0\xaf"', "request.malformed_json", "", None),
    ("unterminated-string-with-brackets", '["' + "[" * 500, "request.malformed_json", "", None),
    ("too-large", "[" + "1," * 30_000 + "1]", "limit.json_size", "", 50_000),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "code", "pointer", "limit"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_refused(text: str | bytes, code: str, pointer: str | None, limit: int | None) -> None:
    with pytest.raises(JsonBoundsError) as info:
        loads(text, max_size=50_000)
    err = info.value
    assert (err.code, err.pointer, err.limit) == (code, pointer, limit)
    assert err.message and err.hint
    assert isinstance(err, ValueError)  # callers that catch ValueError keep working


def test_every_code_is_documented_and_raised() -> None:
    yaml_only = {"limit.yaml_aliases"}
    assert {r[2] for r in REFUSED} | yaml_only == set(CODES)


ACCEPTED: list[tuple[str, str | bytes, Any]] = [
    ("depth-at-limit", nested(MAX_DEPTH), json.loads(nested(MAX_DEPTH))),
    ("brackets-in-strings", json.dumps(["[" * 5000, "{" * 5000]), ["[" * 5000, "{" * 5000]),
    ("escaped-quotes", r'["\"[[[", "\\"]', ['"[[[', "\\"]),
    ("surrogate-pair", '"\\ud83d\\ude00"', "😀"),
    ("escaped-backslash-u", '"\\\\ud800"', "\\ud800"),
    ("int-at-limit", "-" + "9" * 100, -int("9" * 100)),
    ("big-float", "1e308", 1e308),
    ("tiny-float", "1e-999", 0.0),
    ("bom", '\ufeff{"a": 1}', {"a": 1}),
    ("bytes", '{"é": "😀"}'.encode(), {"é": "😀"}),
    ("same-key-in-siblings", '[{"a": 1}, {"a": 2}]', [{"a": 1}, {"a": 2}]),
]


@pytest.mark.parametrize(("text", "value"), [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_accepted(text: str | bytes, value: Any) -> None:
    assert loads(text) == value


def test_depth_limit_is_a_keyword() -> None:
    assert loads(nested(3), max_depth=3) == [[[]]]
    with pytest.raises(JsonBoundsError, match="deeper than 2 levels at line 1 column 3"):
        loads(nested(3), max_depth=2)


def test_depth_position_counts_lines() -> None:
    text = '{\n  "a":\n' + nested(10) + "}"
    with pytest.raises(JsonBoundsError) as info:
        loads(text, max_depth=5)
    assert info.value.position == text.index("[") + 4
    assert "line 3 column 5" in info.value.message


BOMB = """a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
"""

# fmt: off
# (id, YAML, code, line)
YAML_REFUSED = [
    ("billion-laughs", BOMB, "limit.yaml_aliases", 6),
    ("self-alias", "a: &x [1, *x]", "limit.yaml_aliases", 1),
    ("deep-block", "".join("  " * i + "k:\n" for i in range(MAX_DEPTH + 1)) + "  " * 129 + "v\n",
     "limit.json_depth", MAX_DEPTH + 1),
    ("deep-flow", "a: " + nested(MAX_DEPTH + 5), "limit.json_depth", 1),
    ("deep-through-alias", "x: &x " + nested(100) + "\ny: " + "[" * 40 + "*x" + "]" * 40,
     "limit.json_depth", 2),
    ("duplicate-key", "a: 1\nb: 2\na: 3\n", "json.duplicate_key", 3),
    ("int-over-python-limit", "n: " + "9" * 5000, "limit.json_number", 1),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "code", "line"), [y[1:] for y in YAML_REFUSED], ids=[y[0] for y in YAML_REFUSED]
)
def test_yaml_refused(text: str, code: str, line: int) -> None:
    with pytest.raises(JsonBoundsError) as info:
        load_yaml(text)
    assert (info.value.code, info.value.line) == (code, line)


@pytest.mark.parametrize(
    ("text", "code", "pointer"),
    [("a: .nan", "json.non_finite", "/a"), ("a: [-.inf]", "json.non_finite", "/a/0"),
     ("n: " + "9" * 101, "limit.json_number", "/n")],
)  # fmt: skip
def test_yaml_values_are_bounded_like_json(text: str, code: str, pointer: str) -> None:
    with pytest.raises(JsonBoundsError) as info:
        load_yaml(text)
    assert (info.value.code, info.value.pointer) == (code, pointer)


def test_yaml_aliases_within_bounds_are_expanded() -> None:
    data, node = load_yaml("base: &b {x: 1}\nc: *b\nd:\n  <<: *b\n  y: 2\nwhen: 2024-01-01\n")
    assert data == {"base": {"x": 1}, "c": {"x": 1}, "d": {"x": 1, "y": 2}, "when": "2024-01-01"}
    assert node is not None and node.start_mark.line == 0


def test_yaml_alias_budget_is_a_keyword() -> None:
    text = "a: &a [1, 2, 3]\nb: [*a, *a, *a]\n"
    assert load_yaml(text, max_nodes=20)[0]["b"] == [[1, 2, 3]] * 3
    with pytest.raises(JsonBoundsError, match="more than 10 nodes"):
        load_yaml(text, max_nodes=10)
