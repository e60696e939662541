"""``POST /v1/programs/check``: the checker's report, placed in the source, storing nothing.

Against the real API and Redis (tests/service/conftest.py); the check runs no engine and no
worker, so the stand-in engine of these fixtures is all it needs.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.service.conftest import error_of

SOURCE = """\
# a comment, so that lines are not offsets
program: checked-{n}
version: 3
inputs:
  type: object
  properties:
    ticket: {{type: string, maxLength: 2000}}
  required: [ticket]
system: You sort support tickets.
steps:
  - id: team
    user: "Ticket: {{{{ inputs.ticket }}}}. Which team?"
    select: [billing, bugs]
  - id: answer
    user: |-
      Reply as JSON.
    gen:
      max_tokens: 40
      json_schema:
        type: object
        properties:
          tags: {{type: array, items: {{type: string}}, uniqueItems: true}}
        required: [tags]
"""


def check(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post("/v1/programs/check", json=body)


def at(source: str, span: list[int]) -> str:
    return source[span[0] : span[1]]


def test_a_good_program_is_reported_and_not_stored(acme: httpx.Client) -> None:
    source = SOURCE.format(n=1)
    r = check(acme, {"source": source})
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["ok"], report["errors"], report["ref"]) == (True, [], "checked-1@3")
    assert report["program"]["steps"][0]["select"] == ["billing", "bugs"]
    assert report["inputs_schema"]["required"] == ["ticket"]

    prefix = report["prefix"]
    assert prefix["breaks_at"] == "step `team` user"
    assert prefix["text"].endswith(
        "You sort support tickets.<|im_end|>\n<|im_start|>user\nTicket: "
    )
    assert prefix["shared_chars"] == len(prefix["text"])
    spans = {s["field"]: s for s in prefix["spans"]}
    assert at(source, spans["/system"]["span"]) == "You sort support tickets."
    assert spans["/system"]["line"] == 9
    # the first step's user turn is shared up to its first template mark
    assert at(source, spans["/steps/0/user"]["span"]) == "Ticket: "
    assert spans["/steps/0/user"]["line"] == 12

    [section] = report["explain"]
    assert (section["step"], section["field"]) == ("answer", "/steps/1/gen")
    rows = {(row["pointer"], row["keyword"]): row for row in section["keywords"]}
    unique = rows[("/properties/tags", "uniqueItems")]
    assert unique["status"] == "validated"
    assert unique["field"] == "/steps/1/gen/json_schema/properties/tags/uniqueItems"
    assert unique["line"] == 22
    assert at(source, unique["span"]) == "uniqueItems: true"
    assert rows[("", "required")]["status"] == "enforced"

    # nothing was stored
    assert acme.get("/v1/programs/checked-1").status_code == 404


PROBLEMS = [
    # (what to replace, with what, code, field, line, underlined text starts with)
    (
        "{{ inputs.ticket }}",
        "{{ inputs.tiket }}",
        "template.unknown_input",
        "/steps/0/user",
        12,
        'user: "Ticket: {{ inputs.tiket }}',
    ),
    (
        "max_tokens: 40",
        "max_tokens: 999999",
        "limit.max_tokens",
        "/steps/1/gen/max_tokens",
        18,
        "max_tokens: 999999",
    ),
    (
        "select: [billing, bugs]",
        "select: [billing, billing]",
        "grammar.invalid_choices",
        "/steps/0/select",
        13,
        "select:",
    ),
    ("  - id: answer", "  - id: team", "step.duplicate_id", "/steps/1/id", 14, "id: team"),
    (
        "version: 3",
        "version: 3\ncolour: blue",
        "program.unknown_field",
        "/colour",
        4,
        "colour: blue",
    ),
]


@pytest.mark.parametrize(("old", "new", "code", "field", "line", "underlined"), PROBLEMS)
def test_problems_come_with_code_field_line_span_and_hint(
    acme: httpx.Client, old: str, new: str, code: str, field: str, line: int, underlined: str
) -> None:
    source = SOURCE.format(n=2).replace(old, new)
    r = check(acme, {"source": source})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["ok"] is False and report["program"] is None
    problem = next(p for p in report["errors"] if p["code"] == code)
    assert (problem["field"], problem["line"]) == (field, line)
    assert at(source, problem["span"]).startswith(underlined)
    assert problem["message"]


def test_a_refused_keyword_is_reported_beside_its_problem(acme: httpx.Client) -> None:
    source = SOURCE.format(n=3).replace(
        "required: [tags]", "required: [tags]\n        anyOf: [false]"
    )
    report = check(acme, {"source": source}).json()
    [problem] = report["errors"]
    assert problem["code"] == "grammar.unsupported"
    # the enforcement report still comes: the problem is one of its rows
    rows = report["explain"][0]["keywords"]
    refused = [row for row in rows if row["status"] == "rejected"]
    assert [row["keyword"] for row in refused] == ["anyOf"]
    assert refused[0]["line"] == problem["line"] == 24


def test_a_syntax_error_is_a_problem_with_its_line(acme: httpx.Client) -> None:
    r = check(acme, {"source": "program: x\nsteps: [\n  {id: a\n"})
    assert r.status_code == 200
    [problem] = r.json()["errors"]
    assert problem["code"] == "program.syntax"
    assert problem["line"] == 4


def test_a_program_sent_as_json_is_placed_in_the_body(acme: httpx.Client) -> None:
    program = {
        "program": "as-json",
        "inputs": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
        "steps": [{"id": "a", "user": "Say {{ inputs.word }}", "gen": {"regex": "[a-z]+"}}],
    }
    text = json.dumps(program, indent=1)
    r = acme.post("/v1/programs/check", content=text, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["ref"] == "as-json@1" and report["inputs_schema"] == program["inputs"]
    assert [p["code"] for p in report["errors"]] == ["template.unknown_input"]
    assert at(text, report["errors"][0]["span"]).startswith('"user": "Say {{ inputs.word }}"')


def alias_bomb(levels: int = 9) -> str:
    """YAML whose aliases expand to 10**levels nodes ("billion laughs")."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


HOSTILE = [
    # (body, status, code, field)
    ({"source": alias_bomb()}, 400, "limit.yaml_aliases", "/source"),
    ({"source": "program: x\nprogram: y\nsteps: []\n"}, 400, "json.duplicate_key", "/source"),
    ({"source": "x: " + "[" * 500 + "]" * 500}, 400, "limit.json_depth", "/source"),
    ({"source": "program: x\nversion: " + "9" * 5000 + "\n"}, 400, "limit.json_number", "/source"),
    ({"source": 42}, 422, "request.invalid", "/source"),
    ({"source": "program: x", "steps": []}, 422, "request.invalid", "/steps"),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), HOSTILE)
def test_hostile_sources_are_refused_naming_the_field(
    acme: httpx.Client, body: Any, status: int, code: str, field: str
) -> None:
    r = check(acme, body)
    assert r.status_code == status, r.text
    error = error_of(r)
    assert (error["code"], error["field"]) == (code, field)
    assert acme.get("/readyz").status_code in (200, 503)  # still answering


def test_hostile_bodies_are_refused_before_the_checker(acme: httpx.Client) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    r = acme.post("/v1/programs/check", content=deep)
    assert (r.status_code, error_of(r)["code"]) == (400, "limit.json_depth")
    r = acme.post("/v1/programs/check", content=b"{not json")
    assert (r.status_code, error_of(r)["code"]) == (400, "request.malformed_json")


def test_a_source_over_the_size_limit_names_it(acme: httpx.Client) -> None:
    r = check(acme, {"source": "# " + "x" * 1_000_001})
    assert r.status_code == 413, r.text
    error = error_of(r)
    assert (error["code"], error["field"], error["limit"]) == (
        "limit.json_size",
        "/source",
        1_000_000,
    )


def test_check_needs_a_key(anon: httpx.Client) -> None:
    r = check(anon, {"source": SOURCE.format(n=4)})
    assert (r.status_code, error_of(r)["code"]) == (401, "auth.missing")


def test_check_is_documented(anon: httpx.Client) -> None:
    spec = anon.get("/openapi.json").json()
    operation = spec["paths"]["/v1/programs/check"]["post"]
    assert "store nothing" in operation["description"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/CheckReport")
    assert "/playground" not in spec["paths"]
