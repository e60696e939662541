"""API keys: creation, hashed storage, verification, revocation, the CLI, and 401s."""

from __future__ import annotations

import argparse
import json

import httpx
import pytest
import redis

from sgflow.service import KeyStore, keys_cli
from tests.service.conftest import REDIS_URL, error_of


def test_secret_format_and_hashed_storage(keys: KeyStore, redis_client: redis.Redis) -> None:
    key_id, secret = keys.create_key("initech", name="ci")
    assert secret.startswith(f"sgf_{key_id}_") and len(secret) == 4 + 16 + 1 + 43
    stored: dict[str, str] = redis_client.hgetall(f"{keys.prefix}apikey:{key_id}")  # type: ignore[assignment]
    assert stored["tenant"] == "initech" and stored["name"] == "ci"
    assert stored["hash"].startswith("sha256$")
    assert secret not in json.dumps(stored) and secret.split("_")[2] not in json.dumps(stored)
    verified = keys.verify_key(secret)
    assert verified is not None and (verified.id, verified.tenant) == (key_id, "initech")
    assert "initech" in keys.tenants()


def test_two_keys_never_share_a_hash(keys: KeyStore, redis_client: redis.Redis) -> None:
    a, _ = keys.create_key("initech")
    b, _ = keys.create_key("initech")
    hashes = {redis_client.hget(f"{keys.prefix}apikey:{k}", "hash") for k in (a, b)}
    assert len(hashes) == 2


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "sgf_",
        "not-a-key",
        "sgf_0123456789abcdef_" + "A" * 43,  # well-formed, unknown id
        "sgf_0123456789ABCDEF_" + "A" * 43,  # id not lower-case hex
        "sgf_0123456789abcdef_short",
    ],
)
def test_verify_refuses(keys: KeyStore, secret: str) -> None:
    assert keys.verify_key(secret) is None


def test_wrong_secret_for_a_real_id(keys: KeyStore) -> None:
    key_id, secret = keys.create_key("initech")
    forged = f"sgf_{key_id}_" + ("B" if secret[-1] != "B" else "C") * 43
    assert keys.verify_key(forged) is None


def test_tenant_names_are_checked(keys: KeyStore) -> None:
    for bad in ("", "Acme", "a:b", "a b", "-a", "x" * 65):
        with pytest.raises(ValueError, match="must match"):
            keys.create_key(bad)


def test_revoke_is_immediate_and_idempotent(keys: KeyStore, api_url: str) -> None:
    key_id, secret = keys.create_key("acme")
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{api_url}/v1/programs", headers=headers).status_code == 200
    first = keys.revoke_key(key_id)
    assert first is not None and first.revoked
    again = keys.revoke_key(key_id)
    assert again is not None and again.revoked_at == first.revoked_at
    r = httpx.get(f"{api_url}/v1/programs", headers=headers)
    assert r.status_code == 401
    assert error_of(r)["code"] == "auth.invalid"
    assert keys.revoke_key("0123456789abcdef") is None
    assert keys.revoke_key("../etc") is None
    listed = {k.id: k for k in keys.list_keys("acme")}
    assert listed[key_id].revoked


def _bad_auth_cases(keys: KeyStore) -> list[tuple[dict[str, str], str]]:
    revoked_id, revoked = keys.create_key("acme")
    keys.revoke_key(revoked_id)
    real_id, real = keys.create_key("acme")
    return [
        ({}, "auth.missing"),
        ({"Authorization": ""}, "auth.missing"),
        ({"Authorization": "Bearer"}, "auth.invalid"),
        ({"Authorization": f"Basic {real}"}, "auth.invalid"),
        ({"Authorization": "Bearer not-a-key"}, "auth.invalid"),
        ({"Authorization": "Bearer sgf_0123456789abcdef_" + "A" * 43}, "auth.invalid"),
        ({"Authorization": f"Bearer sgf_{real_id}_" + "A" * 43}, "auth.invalid"),
        ({"Authorization": f"Bearer {real}x"}, "auth.invalid"),
        ({"Authorization": f"Bearer {revoked}"}, "auth.invalid"),
    ]


def test_bad_credentials_on_every_programs_endpoint(keys: KeyStore, api_url: str) -> None:
    endpoints = [
        ("GET", "/v1/programs"),
        ("POST", "/v1/programs"),
        ("GET", "/v1/programs/any"),
        ("GET", "/v1/programs/any/1"),
        ("DELETE", "/v1/programs/any/1"),
    ]
    with httpx.Client(base_url=api_url) as client:
        for headers, code in _bad_auth_cases(keys):
            for method, path in endpoints:
                r = client.request(method, path, headers=headers, content=b"{}")
                assert r.status_code == 401, (headers, method, path, r.text)
                err = error_of(r)
                assert (err["code"], err["field"]) == (code, "header:authorization")
                assert r.headers["www-authenticate"] == "Bearer"


def _cli(monkeypatch: pytest.MonkeyPatch, prefix: str, *argv: str) -> argparse.Namespace:
    monkeypatch.setenv("SGFLOW_PREFIX", prefix)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    parser = argparse.ArgumentParser(prog="sgflow")
    keys_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_cli_create_list_revoke(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    prefix: str,
    api_url: str,
) -> None:
    args = _cli(
        monkeypatch, prefix, "keys", "create", "--tenant", "umbrella", "--name", "cli", "--json"
    )
    assert keys_cli.run(args) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["tenant"] == "umbrella" and created["secret"].startswith("sgf_")
    headers = {"Authorization": f"Bearer {created['secret']}"}
    assert httpx.get(f"{api_url}/v1/programs", headers=headers).status_code == 200

    assert keys_cli.run(_cli(monkeypatch, prefix, "keys", "list", "--tenant", "umbrella")) == 0
    table = capsys.readouterr().out
    assert created["id"] in table and "cli" in table and created["secret"] not in table

    assert keys_cli.run(_cli(monkeypatch, prefix, "keys", "revoke", created["id"])) == 0
    assert "revoked" in capsys.readouterr().out
    assert httpx.get(f"{api_url}/v1/programs", headers=headers).status_code == 401

    assert keys_cli.run(_cli(monkeypatch, prefix, "keys", "revoke", "0123456789abcdef")) == 1
    assert "no key" in capsys.readouterr().err


def test_cli_plain_create_prints_the_secret_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], prefix: str
) -> None:
    assert keys_cli.run(_cli(monkeypatch, prefix, "keys", "create", "--tenant", "umbrella")) == 0
    out = capsys.readouterr().out.splitlines()
    assert "shown once" in out[0] and out[1].startswith("sgf_")


def test_cli_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], prefix: str
) -> None:
    assert keys_cli.run(_cli(monkeypatch, prefix, "keys", "create", "--tenant", "Bad Name")) == 2
    assert "must match" in capsys.readouterr().err
    args = _cli(
        monkeypatch, prefix, "keys", "list", "--tenant", "x", "--redis-url", "redis://127.0.0.1:9/0"
    )
    assert keys_cli.run(args) == 1
    assert "Redis at redis://127.0.0.1:9/0" in capsys.readouterr().err
