"""Tenants and their API keys, in Redis.

A key's secret is ``sgf_<key id>_<43 url-safe random characters>`` (256 random bits). Only a
salted hash is stored: ``sha256$<salt hex>$<sha256(salt + secret) hex>`` with 16 random salt
bytes per key. A fast hash is the right tool here: the secret is random, not a password, so
there is nothing to guess (scrypt would only add ~50 ms to every request); the salt stops a
precomputed table from matching across keys or installations, and the ``sha256$`` tag leaves
room for another scheme later. Verification looks the key up by its id (part of the secret)
and compares hashes with :func:`hmac.compare_digest`.

Keys, under the store's ``prefix`` (default ``sgflow:``):

========================== ========== ======================================================
``apikey:<key id>``        hash       ``tenant``, ``name``, ``hash``, ``created_at``,
                                      ``revoked_at`` (``""`` while valid)
``tenant:<t>:apikeys``     sorted set key ids by ``created_at``
``tenants``                sorted set tenant names by when their first key was created
========================== ========== ======================================================

Revoked keys stay (listed, refused) so that their ids are never reused silently.

Each function taking a :class:`~sgflow.store.records.Keys` is an operation
(:mod:`sgflow.store.ops`); run it with :class:`~sgflow.store.KeyStore` (sync: the CLI) or
:class:`~sgflow.store.AsyncKeyStore` (the API). Redis errors (``redis.RedisError``) pass
through.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sgflow.store.ops import Eval, Lua, Op, Pipe, call
from sgflow.store.records import Keys, as_str

__all__ = [
    "SECRET_PREFIX",
    "TENANT_PATTERN",
    "ApiKey",
    "create_key",
    "get_key",
    "list_keys",
    "parse_secret",
    "revoke_key",
    "tenants",
    "verify_key",
]

SECRET_PREFIX = "sgf_"
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_SECRET = re.compile(r"^sgf_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")

_REVOKE = Lua("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local at = redis.call('HGET', KEYS[1], 'revoked_at')
if not at or at == '' then redis.call('HSET', KEYS[1], 'revoked_at', ARGV[1]) end
return 1
""")


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret. Times are epoch seconds."""

    id: str
    tenant: str
    name: str | None
    created_at: float
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def parse_secret(secret: str) -> str | None:
    """The key id inside a well-formed secret, else None."""
    match = _SECRET.match(secret)
    return match.group(1) if match else None


def _hash(secret: str, salt: bytes) -> str:
    return hashlib.sha256(salt + secret.encode()).hexdigest()


def _key(keys: Keys, key_id: str) -> str:
    return f"{keys.prefix}apikey:{key_id}"


def _tenant_keys(keys: Keys, tenant: str) -> str:
    return f"{keys.prefix}tenant:{tenant}:apikeys"


def create_key(keys: Keys, tenant: str, *, name: str | None = None) -> Op[tuple[str, str]]:
    """Create a key for ``tenant`` (registering the tenant on its first key); ``name``
    (default None) is a label for people. Returns ``(key_id, secret)``; the secret is not
    stored and cannot be shown again. Raises ``ValueError`` for a tenant name that is not
    ``[a-z0-9][a-z0-9._-]{0,63}``."""
    if not TENANT_PATTERN.match(tenant):
        raise ValueError(
            f"tenant {tenant!r} must match {TENANT_PATTERN.pattern} (lower case, digits, . _ -)"
        )
    key_id = secrets.token_hex(8)
    secret = f"{SECRET_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    salt = secrets.token_bytes(16)
    now = time.time()
    record = {
        "tenant": tenant,
        "name": name or "",
        "hash": f"sha256${salt.hex()}${_hash(secret, salt)}",
        "created_at": repr(now),
        "revoked_at": "",
    }
    yield Pipe(
        [
            call("hset", _key(keys, key_id), mapping=record),
            call("zadd", _tenant_keys(keys, tenant), {key_id: now}),
            call("zadd", f"{keys.prefix}tenants", {tenant: now}, nx=True),
        ],
        transaction=True,
    )
    return key_id, secret


def get_key(keys: Keys, key_id: str) -> Op[ApiKey | None]:
    """The key with this id (revoked or not), or None."""
    if not _KEY_ID.match(key_id):
        return None
    record = yield call("hgetall", _key(keys, key_id))
    return _to_key(key_id, record) if record else None


def verify_key(keys: Keys, secret: str) -> Op[ApiKey | None]:
    """The valid (not revoked) key whose secret this is, or None: malformed, unknown,
    revoked and wrong secrets look the same to the caller. One Redis read."""
    key_id = parse_secret(secret)
    if key_id is None:
        return None
    raw = yield call("hgetall", _key(keys, key_id))
    record = {as_str(k): as_str(v) for k, v in raw.items()}
    scheme, _, rest = record.get("hash", "").partition("$")
    salt_hex, _, expected = rest.partition("$")
    if scheme != "sha256" or not expected:
        return None
    try:
        actual = _hash(secret, bytes.fromhex(salt_hex))
    except ValueError:  # a damaged record refuses, it does not crash the request
        return None
    if not hmac.compare_digest(actual, expected) or record.get("revoked_at"):
        return None
    return _to_key(key_id, record)


def revoke_key(keys: Keys, key_id: str) -> Op[ApiKey | None]:
    """Revoke a key at once (idempotent; the first revocation time is kept). Returns the
    key, or None when there is no such key."""
    if not _KEY_ID.match(key_id):
        return None
    if not (yield Eval(_REVOKE, keys=[_key(keys, key_id)], args=[repr(time.time())])):
        return None
    return (yield from get_key(keys, key_id))


def list_keys(keys: Keys, tenant: str) -> Op[list[ApiKey]]:
    """Every key of ``tenant``, oldest first, revoked ones included."""
    ids = [as_str(i) for i in (yield call("zrange", _tenant_keys(keys, tenant), 0, -1))]
    if not ids:
        return []
    records = yield Pipe([call("hgetall", _key(keys, key_id)) for key_id in ids])
    return [_to_key(i, rec) for i, rec in zip(ids, records, strict=True) if rec]


def tenants(keys: Keys) -> Op[list[str]]:
    """Every tenant that ever had a key, in order of their first key."""
    return [as_str(t) for t in (yield call("zrange", f"{keys.prefix}tenants", 0, -1))]


def _to_key(key_id: str, record: dict[Any, Any]) -> ApiKey:
    rec = {as_str(k): as_str(v) for k, v in record.items()}
    return ApiKey(
        id=key_id,
        tenant=rec["tenant"],
        name=rec.get("name") or None,
        created_at=float(rec["created_at"]),
        revoked_at=float(rec["revoked_at"]) if rec.get("revoked_at") else None,
    )
