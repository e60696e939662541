"""Tenants see only their own programs: another tenant's program answers 404 everywhere,
exactly like one that does not exist."""

from __future__ import annotations

import httpx

from tests.service.conftest import error_of
from tests.service.test_programs import program, unique


def test_other_tenants_programs_are_invisible(acme: httpx.Client, globex: httpx.Client) -> None:
    name = unique("secret")
    created = acme.post("/v1/programs", json=program(name))
    assert created.status_code == 201

    for method, path in [
        ("GET", f"/v1/programs/{name}"),
        ("GET", f"/v1/programs/{name}/1"),
        ("DELETE", f"/v1/programs/{name}/1"),
    ]:
        theirs = globex.request(method, path)
        missing = globex.request(method, path.replace(name, "never-posted"))
        assert theirs.status_code == missing.status_code == 404, (method, path)
        assert error_of(theirs)["code"] == error_of(missing)["code"] == "program.not_found"

    assert name not in {p["name"] for p in globex.get("/v1/programs?limit=1000").json()["data"]}
    # globex's DELETE did nothing to acme's program
    assert acme.get(f"/v1/programs/{name}/1").json()["deleted_at"] is None


def test_same_name_in_two_tenants_are_two_programs(
    acme: httpx.Client, globex: httpx.Client
) -> None:
    name = unique("shared-name")
    a = acme.post("/v1/programs", json=program(name))
    b = globex.post("/v1/programs", json=program(name, description="globex's own"))
    assert (a.status_code, b.status_code) == (201, 201)  # no 409 across tenants
    assert acme.get(f"/v1/programs/{name}/1").json()["hash"] == a.json()["hash"]
    assert globex.get(f"/v1/programs/{name}/1").json()["hash"] == b.json()["hash"]
    globex.delete(f"/v1/programs/{name}/1")
    assert acme.get(f"/v1/programs/{name}/1").json()["deleted_at"] is None
