"""Hostile JSON (and YAML) through the real API: every document is refused with a 4xx that
names the code, the field (a JSON pointer) and the limit, within ``BOUND_S``, and the service
answers ``/healthz`` afterwards (the ``api`` fixture checks it after every test).

The same documents go through the pure loader in ``tests/test_jsonbounds.py``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from sgflow.errors import CODES
from sgflow.jsonbounds import MAX_DEPTH
from tests.adversarial.conftest import error_of

ZERO_PATH = "/0" * MAX_DEPTH
NDJSON = {"Content-Type": "application/x-ndjson"}


def deep_arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def inline(inputs_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "program": "adversary",
        "version": 1,
        "inputs": inputs_schema or {"type": "object"},
        "steps": [{"id": "a", "user": "hi", "gen": {"max_tokens": 8}}],
    }


def runs_body(inputs: str) -> str:
    """A /v1/runs body with ``inputs`` spliced in as raw JSON text."""
    return '{"program": ' + json.dumps(inline()) + ', "priority": 99, "inputs": ' + inputs + "}"


# fmt: off
# (id, path, raw body, status, code, field, limit)
BODIES: list[tuple[str, str, str | bytes, int, str, str, int | None]] = [
    ("runs-20000-nested", "/v1/runs", deep_arrays(20_000), 400, "limit.json_depth", ZERO_PATH,
     MAX_DEPTH),
    ("runs-just-past-the-limit", "/v1/runs", deep_arrays(MAX_DEPTH + 1), 400,
     "limit.json_depth", ZERO_PATH, MAX_DEPTH),
    ("runs-at-the-limit", "/v1/runs", deep_arrays(MAX_DEPTH), 422, "request.invalid", "", None),
    ("runs-deep-input", "/v1/runs", runs_body('{"x": ' + deep_arrays(20_000) + "}"), 400,
     "limit.json_depth", "/inputs/x" + "/0" * (MAX_DEPTH - 2), MAX_DEPTH),
    ("runs-huge-int", "/v1/runs", runs_body('{"n": ' + "9" * 5000 + "}"), 400,
     "limit.json_number", "/inputs/n", 100),
    ("runs-nan", "/v1/runs", runs_body('{"n": NaN}'), 400, "json.non_finite", "/inputs/n", None),
    ("runs-infinity", "/v1/runs", runs_body('{"n": [1, Infinity]}'), 400, "json.non_finite",
     "/inputs/n/1", None),
    ("runs-minus-infinity", "/v1/runs", runs_body('{"n": -Infinity}'), 400, "json.non_finite",
     "/inputs/n", None),
    ("runs-1e999", "/v1/runs", runs_body('{"n": 1e999}'), 400, "json.non_finite", "/inputs/n",
     None),
    ("runs-lone-surrogate", "/v1/runs", runs_body('{"s": "\\ud800"}'), 400,
     "json.lone_surrogate", "/inputs/s", None),
    ("runs-duplicate-key", "/v1/runs", runs_body('{"a": 1, "a": 2}'), 400, "json.duplicate_key",
     "/inputs/a", None),
    ("runs-not-utf8", "/v1/runs", b'{"program": "\xc0\xaf"}', 400, "request.malformed_json", "",
     None),
    ("runs-deep-inputs-schema", "/v1/runs",
     '{"program": {"program": "p", "version": 1, "inputs": ' + deep_arrays(500) + "}}", 400,
     "limit.json_depth", "/program/inputs" + "/0" * (MAX_DEPTH - 2), MAX_DEPTH),
    ("programs-nan", "/v1/programs", '{"program": "p", "version": NaN, "steps": []}', 400,
     "json.non_finite", "/version", None),
    ("programs-duplicate-steps", "/v1/programs",
     '{"program": "p", "version": 1, "steps": [], "steps": []}', 400, "json.duplicate_key",
     "/steps", None),
    ("batches-json-deep", "/v1/batches", deep_arrays(20_000), 400, "limit.json_depth",
     ZERO_PATH, MAX_DEPTH),
    # FastAPI parses this route's body itself, into a pydantic model: bounded before it
    ("extract-20000-nested", "/v1/extract", deep_arrays(20_000), 400, "limit.json_depth",
     ZERO_PATH, MAX_DEPTH),
    ("extract-nan-in-schema", "/v1/extract",
     '{"schema": {"type": "number", "maximum": NaN}, "text": "x"}', 400, "json.non_finite",
     "/schema/maximum", None),
    ("extract-huge-int-in-schema", "/v1/extract",
     '{"schema": {"type": "integer", "minimum": -' + "9" * 200 + '}, "text": "x"}', 400,
     "limit.json_number", "/schema/minimum", 100),
    ("extract-duplicate-key", "/v1/extract", '{"schema": {}, "text": "x", "text": "y"}', 400,
     "json.duplicate_key", "/text", None),
    ("extract-deep-schema", "/v1/extract",
     json.dumps({"schema": json.loads('{"items": ' * 100 + "{}" + "}" * 100), "text": "x"}),
     422, "limit.schema_depth", "/schema" + "/items" * 33, 32),
]
# fmt: on


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "field", "limit"),
    [b[1:] for b in BODIES],
    ids=[b[0] for b in BODIES],
)
def test_bodies(
    api: httpx.Client,
    path: str,
    body: str | bytes,
    status: int,
    code: str,
    field: str,
    limit: int | None,
) -> None:
    content = body.encode() if isinstance(body, str) else body
    r = api.post(path, content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = error_of(r)
    assert (error["code"], error["field"], error["limit"]) == (code, field, limit)
    assert error["message"]


REFUSED_WHILE_PARSING = [b for b in BODIES if b[3] == 400]


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [(b[1], b[2], b[4]) for b in REFUSED_WHILE_PARSING],
    ids=[b[0] for b in REFUSED_WHILE_PARSING],
)
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_any_content_type_is_bounded(
    api: httpx.Client, path: str, body: str | bytes, code: str, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    content = body.encode() if isinstance(body, str) else body
    r = api.post(path, content=content, headers=headers)
    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == code


def test_a_byte_order_mark_is_skipped(api: httpx.Client) -> None:
    r = api.post("/v1/runs", content="\ufeff" + runs_body('{"a": 1}'))
    assert r.status_code == 422
    assert error_of(r)["field"] == "/priority"  # parsed, checked, and refused further on


def test_oversized_body(api: httpx.Client) -> None:
    r = api.post("/v1/runs", content=b"[" * (1 << 20) + b"]" * 10)
    assert r.status_code == 413
    assert error_of(r)["code"] == "limit.request_size"


# fmt: off
# (id, JSONL text, status, code, field)
JSONL: list[tuple[str, str, int, str, str]] = [
    ("deep-line", '{"custom_id": "a", "inputs": {}}\n' + deep_arrays(20_000), 400,
     "limit.json_depth", "/inputs/1" + ZERO_PATH),
    ("nan-line", '{"custom_id": "a", "inputs": {"x": NaN}}', 400, "json.non_finite",
     "/inputs/0/inputs/x"),
    ("huge-int-line", '{"custom_id": "a", "inputs": {"x": ' + "1" * 5000 + "}}", 400,
     "limit.json_number", "/inputs/0/inputs/x"),
    ("surrogate-line", '\n\n{"custom_id": "\\udfff", "inputs": {}}', 400, "json.lone_surrogate",
     "/inputs/0/custom_id"),
    ("duplicate-key-line", '{"custom_id": "a", "custom_id": "b", "inputs": {}}', 400,
     "json.duplicate_key", "/inputs/0/custom_id"),
    ("broken-line", '{"custom_id": "a", "inputs": {}}\n{"custom_id": "b", "inputs": {}\n', 400,
     "request.malformed_json", ""),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "status", "code", "field"), [j[1:] for j in JSONL], ids=[j[0] for j in JSONL]
)
def test_jsonl_lines(api: httpx.Client, text: str, status: int, code: str, field: str) -> None:
    r = api.post("/v1/batches", params={"program": "p@1"}, content=text, headers=NDJSON)
    assert r.status_code == status, r.text
    error = error_of(r)
    assert (error["code"], error["field"]) == (code, field)
    assert "line " in error["message"]


BOMB = """program: bomb
version: 1
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
steps: []
"""

# fmt: off
# (id, YAML source, code, field, line)
SOURCES: list[tuple[str, str, str, str, int | None]] = [
    ("alias-bomb", BOMB, "limit.yaml_aliases", "", 8),
    ("self-alias", "program: p\nsteps: &s [*s]\n", "limit.yaml_aliases", "", 2),
    ("deep-block", "program: p\nx:\n" + "".join("  " * i + "k:\n" for i in range(1, 140)),
     "limit.json_depth", "", 130),
    ("deep-flow", "program: p\nx: " + "[" * 20_000 + "\n", "program.syntax", "", 2),
    ("nan", "program: p\nversion: .nan\nsteps: []\n", "json.non_finite", "/version", 2),
    ("huge-int", "program: p\nversion: " + "9" * 5000 + "\n", "limit.json_number", "", 1),
    ("duplicate-key", "program: p\nsteps: []\nprogram: q\n", "json.duplicate_key", "", 3),
]
# fmt: on


@pytest.mark.parametrize(
    ("source", "code", "field", "line"), [s[1:] for s in SOURCES], ids=[s[0] for s in SOURCES]
)
def test_program_sources(
    api: httpx.Client, source: str, code: str, field: str, line: int | None
) -> None:
    r = api.post("/v1/programs", json={"source": source})
    error = error_of(r)
    # the code's one status (sgflow.errors): a refused document is 400 wherever it is sent
    assert r.status_code == CODES[code].status, r.text
    assert (error["code"], error["field"]) == (code, field)
    assert [e["line"] for e in error["errors"]][:1] == [line]
