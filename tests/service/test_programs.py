"""``/v1/programs``: submit (checked, immutable ``name@version``), list, read, delete."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis.asyncio

from sgflow.service import StoredProgram, Tenant
from sgflow.service.deps import resolve_program_ref
from sgflow.service.errors import ApiError
from sgflow.store import AsyncProgramStore, content_hash
from tests.service.conftest import REDIS_URL, error_of

_counter = itertools.count()


def unique(stem: str = "prog") -> str:
    return f"{stem}-{next(_counter)}"


def program(name: str, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "program": name,
        "version": version,
        "steps": [{"id": "answer", "user": "Say a digit.", "gen": {"regex": "[0-9]"}}],
        **extra,
    }


YAML = """\
program: {name}
version: 2
description: classify a ticket
inputs:
  type: object
  properties: {{ticket: {{type: string}}}}
  required: [ticket]
steps:
  - id: team  # a comment
    user: "Ticket: {{{{ inputs.ticket }}}}. Which team?"
    select: [billing, bugs, sales]
"""


def test_create_read_and_idempotent_repost(acme: httpx.Client) -> None:
    name = unique()
    body = program(name, description="digits")
    r = acme.post("/v1/programs", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["ref"] == f"{name}@1"
    assert created["hash"] == content_hash(body)
    assert created["program"] == body and created["source"] is None
    assert created["deleted_at"] is None
    assert r.headers["location"] == f"/v1/programs/{name}/1"

    again = acme.post("/v1/programs", json=body)
    assert again.status_code == 200
    assert again.json() == created

    r = acme.get(f"/v1/programs/{name}/1")
    assert r.status_code == 200
    assert r.json() == created


def test_yaml_source_keeps_its_text_and_equals_its_json(acme: httpx.Client) -> None:
    name = unique("triage")
    text = YAML.format(name=name)
    r = acme.post("/v1/programs", json={"source": text})
    assert r.status_code == 201, r.text
    stored = r.json()
    assert (stored["version"], stored["source"]) == (2, text)
    assert stored["description"] == "classify a ticket"
    # the same program as JSON is the same version
    same = acme.post("/v1/programs", json=stored["program"])
    assert same.status_code == 200
    assert same.json()["hash"] == stored["hash"]


def test_same_version_other_content_is_a_conflict(acme: httpx.Client) -> None:
    name = unique()
    assert acme.post("/v1/programs", json=program(name)).status_code == 201
    r = acme.post("/v1/programs", json=program(name, description="changed"))
    assert r.status_code == 409
    err = error_of(r)
    assert (err["code"], err["field"]) == ("program.version_exists", "/version")
    assert "bump `version`" in str(err["hint"])
    assert (
        acme.post("/v1/programs", json=program(name, 2, description="changed")).status_code == 201
    )


def test_versions_and_listing(acme: httpx.Client) -> None:
    name = unique("listed")
    for version in (1, 3, 2):
        assert acme.post("/v1/programs", json=program(name, version)).status_code == 201
    r = acme.get(f"/v1/programs/{name}")
    assert r.status_code == 200
    assert [v["version"] for v in r.json()["versions"]] == [1, 2, 3]
    assert "program" not in r.json()["versions"][0]

    listed = {p["name"]: p for p in _all_programs(acme)}
    assert listed[name]["version"] == 3


def _all_programs(client: httpx.Client, limit: int = 2) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/programs", params=params).json()
        assert len(page["data"]) <= limit
        out += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def test_pagination_visits_every_name_once(acme: httpx.Client) -> None:
    names = {unique("page") for _ in range(5)}
    for name in names:
        assert acme.post("/v1/programs", json=program(name)).status_code == 201
    seen = [p["name"] for p in _all_programs(acme, limit=2)]
    assert len(seen) == len(set(seen))
    assert names <= set(seen)
    assert seen == sorted(seen)


def test_delete_keeps_the_version_readable_but_never_reused(acme: httpx.Client) -> None:
    name = unique("gone")
    acme.post("/v1/programs", json=program(name, 1))
    acme.post("/v1/programs", json=program(name, 2))
    r = acme.delete(f"/v1/programs/{name}/2")
    assert r.status_code == 200
    deleted_at = r.json()["deleted_at"]
    assert deleted_at is not None
    assert acme.delete(f"/v1/programs/{name}/2").json()["deleted_at"] == deleted_at

    read = acme.get(f"/v1/programs/{name}/2")
    assert read.status_code == 200 and read.json()["deleted_at"] == deleted_at
    assert [
        v["deleted_at"] is not None for v in acme.get(f"/v1/programs/{name}").json()["versions"]
    ] == [
        False,
        True,
    ]
    listed = {p["name"]: p for p in _all_programs(acme, limit=1000)}
    assert listed[name]["version"] == 1  # the latest live version

    r = acme.post("/v1/programs", json=program(name, 2))
    assert r.status_code == 409
    err = error_of(r)
    assert (err["code"], err["field"]) == ("program.version_deleted", "/version")

    acme.delete(f"/v1/programs/{name}/1")
    assert name not in {p["name"] for p in _all_programs(acme, limit=1000)}


def resolver(prefix: str) -> Callable[..., StoredProgram]:
    """:func:`resolve_program_ref` on the API's async store, called from sync code."""

    def resolve(tenant: Tenant, ref: str, **kw: Any) -> StoredProgram:
        async def go() -> StoredProgram:
            client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
            try:
                store = AsyncProgramStore(client, prefix=prefix)
                return await resolve_program_ref(store, tenant, ref, **kw)
            finally:
                await client.aclose()

        return asyncio.run(go())

    return resolve


def test_resolve_program_ref_for_runs(acme: httpx.Client, keys: Any) -> None:
    resolve = resolver(keys.prefix)
    tenant = Tenant("acme", "k")
    name = unique("ref")
    for v in (1, 2):
        acme.post("/v1/programs", json=program(name, v))
    assert resolve(tenant, f"{name}@1").version == 1
    assert resolve(tenant, name).version == 2
    assert resolve(tenant, f"{name}@latest").version == 2
    acme.delete(f"/v1/programs/{name}/2")
    assert resolve(tenant, name).version == 1
    cases = [
        (f"{name}@2", 410, "program.deleted"),
        (f"{name}@9", 404, "program.not_found"),
        (f"{name}@x", 422, "request.invalid"),
        ("Bad Name", 422, "request.invalid"),
        (name, 404, "program.not_found"),  # seen from another tenant below
    ]
    for ref, status, code in cases:
        who = Tenant("globex", "k") if ref == name else tenant
        with pytest.raises(ApiError) as caught:
            resolve(who, ref, field="/program")
        assert (caught.value.status, caught.value.code) == (status, code), ref


STEP = {"id": "a", "user": "hi", "gen": {"max_tokens": 4}}

INVALID: list[tuple[str, Any, str, str]] = [
    # (case, body, code of the first error, its field)
    ("not an object", [1, 2], "program.not_object", ""),
    ("missing steps", {"program": "p"}, "program.missing_field", "/steps"),
    (
        "unknown field",
        {"program": "p", "steps": [STEP], "stepz": 1},
        "program.unknown_field",
        "/stepz",
    ),
    ("wrong type", {"program": "p", "steps": "abc"}, "program.wrong_type", "/steps"),
    ("bad name", {"program": "Bad Name", "steps": [STEP]}, "program.invalid_value", "/program"),
    (
        "version 0",
        {"program": "p", "version": 0, "steps": [STEP]},
        "program.invalid_value",
        "/version",
    ),
    (
        "duplicate step",
        {"program": "p", "steps": [{"id": "a", "user": "x"}, {"id": "a", "user": "y"}]},
        "step.duplicate_id",
        "/steps/1/id",
    ),
    (
        "undefined ref",
        {"program": "p", "steps": [{"id": "a", "user": "{{ steps.nope }}"}]},
        "program.undefined_ref",
        "/steps/0/user",
    ),
    (
        "invalid regex",
        {"program": "p", "steps": [{"id": "a", "user": "x", "gen": {"regex": "(a"}}]},
        "grammar.invalid_regex",
        "/steps/0/gen/regex",
    ),
    (
        "unknown grammar",
        {"program": "p", "steps": [{"id": "a", "user": "x", "gen": {"grammar": "nope"}}]},
        "grammar.unknown_name",
        "/steps/0/gen/grammar",
    ),
    (
        "template syntax",
        {"program": "p", "steps": [{"id": "a", "user": "{{ inputs.x "}]},
        "template.syntax",
        "/steps/0/user",
    ),
    (
        "two actions",
        {"program": "p", "steps": [{"id": "a", "user": "x", "gen": {}, "select": ["a", "b"]}]},
        "step.multiple_actions",
        "/steps/0",
    ),
    (
        "max tokens",
        {"program": "p", "steps": [{"id": "a", "user": "x", "gen": {"max_tokens": 100000}}]},
        "limit.max_tokens",
        "/steps/0/gen/max_tokens",
    ),
    ("source not a string", {"source": 5}, "request.invalid", "/source"),
    ("source with more", {"source": "program: p", "program": "p"}, "request.invalid", "/program"),
    ("YAML syntax", {"source": "program: p\nsteps: [unclosed\n"}, "program.syntax", ""),
    ("YAML not a program", {"source": "just text"}, "program.not_object", ""),
]


@pytest.mark.parametrize(("case", "body", "code", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_programs(acme: httpx.Client, case: str, body: Any, code: str, field: str) -> None:
    r = acme.post("/v1/programs", json=body)
    assert r.status_code == 422, r.text
    err = error_of(r)
    assert (err["code"], err["field"]) == (code, field)
    if code != "request.invalid":
        assert err["errors"][0]["code"] == code


def test_every_problem_is_reported_with_its_line(acme: httpx.Client) -> None:
    source = (
        "program: p\n"
        "steps:\n"
        "  - id: a\n"
        "    user: 'hi {{ steps.b }}'\n"
        "    gen: {regex: '(b'}\n"
        "  - id: a\n"
        "    user: again\n"
    )
    r = acme.post("/v1/programs", json={"source": source})
    assert r.status_code == 422
    problems = {(p["code"], p["field"], p["line"]) for p in error_of(r)["errors"]}
    assert {
        ("program.undefined_ref", "/steps/0/user", 4),
        ("grammar.invalid_regex", "/steps/0/gen/regex", 5),
        ("step.duplicate_id", "/steps/1/id", 6),
    } <= problems
    assert all(p["hint"] for p in error_of(r)["errors"])


def test_a_repeated_invalid_regex_keeps_its_pointer(acme: httpx.Client) -> None:
    body = {"program": "p", "steps": [{"id": "a", "user": "x", "gen": {"regex": "(c"}}]}
    fields = [error_of(acme.post("/v1/programs", json=body))["field"] for _ in range(2)]
    assert fields == ["/steps/0/gen/regex"] * 2


def test_json_programs_get_lines_too(acme: httpx.Client) -> None:
    text = '{\n  "program": "p",\n  "steps": [\n    {"id": "a", "user": "{{ steps.zz }}"}\n  ]\n}'
    r = acme.post("/v1/programs", content=text)
    assert r.status_code == 422
    first = error_of(r)["errors"][0]
    assert (first["code"], first["line"]) == ("program.undefined_ref", 4)


def test_unknown_names_and_versions_are_404(acme: httpx.Client) -> None:
    name = unique("known")
    acme.post("/v1/programs", json=program(name))
    for method, path in [
        ("GET", "/v1/programs/never-posted"),
        ("GET", f"/v1/programs/{name}/2"),
        ("DELETE", f"/v1/programs/{name}/2"),
        ("GET", "/v1/programs/Not:A:Name/1"),
        ("GET", "/v1/programs/never-posted/1"),
    ]:
        r = acme.request(method, path)
        assert r.status_code == 404, (method, path)
        assert error_of(r)["code"] == "program.not_found"
