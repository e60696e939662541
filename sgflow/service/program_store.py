"""Programs stored per tenant as immutable ``name@version`` records in Redis.

A version's body never changes: putting the same ``name@version`` again with the same
content is a no-op, with other content a conflict. Deleting marks the version deleted (no new
runs) but keeps it readable, because runs that used it still point at it. Identity is the
content hash: ``sha256:`` + the SHA-256 of the program's canonical JSON (sorted keys, no
spaces, UTF-8), so the same program sent as JSON or as YAML text is the same version.

Keys, under ``prefix`` (default ``sgflow:``), ``<t>`` the tenant:

=============================================== ========== ===================================
``tenant:<t>:program:<name>:<version>``         hash       ``name``, ``version``, ``hash``,
                                                           ``description``, ``program``
                                                           (canonical JSON), ``source`` (YAML
                                                           text as sent, or ``""``),
                                                           ``created_at``, ``deleted_at``
                                                           (``""`` while live)
``tenant:<t>:program:<name>:versions``          sorted set every version (score = version)
``tenant:<t>:program:<name>:live``              sorted set versions not deleted
``tenant:<t>:programs``                         sorted set names (score 0, listed by name)
=============================================== ========== ===================================

Program names match ``[a-z0-9][a-z0-9._-]{0,63}`` (the format's rule), so ``:versions`` and
``:live`` cannot collide with a numeric version. Writes are single Lua scripts.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import redis

__all__ = [
    "ProgramInfo",
    "ProgramStore",
    "PutOutcome",
    "StoredProgram",
    "canonical_json",
    "content_hash",
]

PutOutcome = Literal["created", "exists", "conflict", "deleted"]

_PUT = """
local h = redis.call('HGET', KEYS[1], 'hash')
if h then
  local d = redis.call('HGET', KEYS[1], 'deleted_at')
  if d and d ~= '' then return 'deleted' end
  if h == ARGV[3] then return 'exists' end
  return 'conflict'
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[2])
return 'created'
"""

_DELETE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local d = redis.call('HGET', KEYS[1], 'deleted_at')
if not d or d == '' then redis.call('HSET', KEYS[1], 'deleted_at', ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

_SUMMARY = ("name", "version", "hash", "description", "created_at", "deleted_at")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def canonical_json(program: dict[str, Any]) -> str:
    return json.dumps(program, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(program: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the program's canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(program).encode()).hexdigest()


@dataclass(frozen=True)
class ProgramInfo:
    """What listings show of a version. Times are epoch seconds."""

    name: str
    version: int
    hash: str
    description: str | None
    created_at: float
    deleted_at: float | None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True)
class StoredProgram(ProgramInfo):
    """A version with its body: ``program`` (the checked program as JSON data) and
    ``source`` (the YAML text it was sent as, or None)."""

    program: dict[str, Any]
    source: str | None


class ProgramStore:
    """Programs of every tenant in one Redis (sync client, with or without
    ``decode_responses``); ``prefix`` (default ``sgflow:``) starts every key. Raises
    ``redis.RedisError`` when Redis cannot be reached. Callers check programs first: the
    store trusts that ``program`` is valid and that ``tenant`` is authenticated."""

    def __init__(self, redis_client: redis.Redis, *, prefix: str = "sgflow:") -> None:
        self.redis = redis_client
        self.prefix = prefix
        self._put = redis_client.register_script(_PUT)
        self._delete = redis_client.register_script(_DELETE)

    def _base(self, tenant: str, name: str) -> str:
        return f"{self.prefix}tenant:{tenant}:program:{name}"

    def _names(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:programs"

    def put(
        self, tenant: str, program: dict[str, Any], *, source: str | None = None
    ) -> tuple[StoredProgram, PutOutcome]:
        """Store a checked program as ``program["program"]@program["version"]`` (version
        default 1). Returns the stored version (the existing one unless ``created``) and the
        outcome: ``created``, ``exists`` (same content), ``conflict`` (other content) or
        ``deleted`` (that version was deleted; versions are never reused)."""
        name, version = str(program["program"]), int(program.get("version", 1))
        base = self._base(tenant, name)
        digest = content_hash(program)
        fields = {
            "name": name,
            "version": str(version),
            "hash": digest,
            "description": str(program.get("description") or ""),
            "program": canonical_json(program),
            "source": source or "",
            "created_at": repr(time.time()),
            "deleted_at": "",
        }
        args: list[str] = [str(version), name, digest]
        for key, value in fields.items():
            args += [key, value]
        keys = [f"{base}:{version}", f"{base}:versions", f"{base}:live", self._names(tenant)]
        outcome: PutOutcome = _s(self._put(keys=keys, args=args))  # type: ignore[assignment]
        stored = self.get(tenant, name, version)
        assert stored is not None  # versions are never removed
        return stored, outcome

    def get(self, tenant: str, name: str, version: int) -> StoredProgram | None:
        """The version with its body, deleted or not; None when the tenant has no such one."""
        record = self.redis.hgetall(f"{self._base(tenant, name)}:{version}")
        if not record:
            return None
        rec = {_s(k): _s(v) for k, v in record.items()}
        info = _info(rec)
        return StoredProgram(
            **vars(info), program=json.loads(rec["program"]), source=rec["source"] or None
        )

    def latest(self, tenant: str, name: str) -> StoredProgram | None:
        """The highest version of ``name`` that is not deleted, or None."""
        top = self.redis.zrange(f"{self._base(tenant, name)}:live", -1, -1)
        return self.get(tenant, name, int(_s(top[0]))) if top else None

    def versions(self, tenant: str, name: str) -> list[ProgramInfo]:
        """Every version of ``name``, deleted ones included, lowest first."""
        base = self._base(tenant, name)
        numbers = [_s(v) for v in self.redis.zrange(f"{base}:versions", 0, -1)]
        return self._infos([f"{base}:{v}" for v in numbers])

    def list_latest(
        self, tenant: str, *, limit: int = 100, after: str | None = None
    ) -> tuple[list[ProgramInfo], str | None]:
        """One page of the tenant's programs by name, each at its latest live version (names
        whose versions are all deleted are left out). ``limit`` (default 100) names are
        scanned after the name ``after`` (default: from the start). Returns the page and the
        cursor of the next one (None at the end)."""
        start = f"({after}" if after else "-"
        names = [
            _s(n)
            for n in self.redis.zrangebylex(self._names(tenant), start, "+", start=0, num=limit)
        ]
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.zrange(f"{self._base(tenant, name)}:live", -1, -1)
        keys = [
            f"{self._base(tenant, name)}:{_s(top[0])}"
            for name, top in zip(names, pipe.execute(), strict=True)
            if top
        ]
        cursor = names[-1] if len(names) == limit else None
        return self._infos(keys), cursor

    def delete(self, tenant: str, name: str, version: int) -> StoredProgram | None:
        """Mark a version deleted (idempotent; the first time is kept). Returns it, or None
        when the tenant has no such version."""
        base = self._base(tenant, name)
        keys = [f"{base}:{version}", f"{base}:live"]
        if not self._delete(keys=keys, args=[str(version), repr(time.time())]):
            return None
        return self.get(tenant, name, version)

    def _infos(self, keys: list[str]) -> list[ProgramInfo]:
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, list(_SUMMARY))
        out = []
        for values in pipe.execute():
            if values[0] is not None:
                out.append(_info({k: _s(v) for k, v in zip(_SUMMARY, values, strict=True)}))
        return out


def _info(rec: dict[str, str]) -> ProgramInfo:
    return ProgramInfo(
        name=rec["name"],
        version=int(rec["version"]),
        hash=rec["hash"],
        description=rec.get("description") or None,
        created_at=float(rec["created_at"]),
        deleted_at=float(rec["deleted_at"]) if rec.get("deleted_at") else None,
    )
