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

Program bodies by content hash (``program-body:<hash>``, write-once) are what workers run:
the API puts the body of every program a run uses before the run exists (:func:`put_body`),
the workers read it (:func:`get_body`).

Each function taking a :class:`~sgflow.store.records.Keys` is an operation
(:mod:`sgflow.store.ops`); run it with :class:`~sgflow.store.ProgramStore` or
:class:`~sgflow.store.AsyncProgramStore` (bodies: :class:`~sgflow.store.ProgramBodies`,
:class:`~sgflow.store.AsyncProgramBodies`). Callers check programs first: the store trusts
that ``program`` is valid and that ``tenant`` is authenticated.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from sgflow.store.ops import Eval, Lua, Op, Pipe, call
from sgflow.store.records import Keys, as_str

__all__ = [
    "ProgramInfo",
    "PutOutcome",
    "StoredProgram",
    "canonical_json",
    "content_hash",
    "delete",
    "get",
    "get_body",
    "latest",
    "list_latest",
    "put",
    "put_body",
    "versions",
]

PutOutcome = Literal["created", "exists", "conflict", "deleted"]

_PUT = Lua("""
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
""")

_DELETE = Lua("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local d = redis.call('HGET', KEYS[1], 'deleted_at')
if not d or d == '' then redis.call('HSET', KEYS[1], 'deleted_at', ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
""")

_SUMMARY = ("name", "version", "hash", "description", "created_at", "deleted_at")


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


def _base(keys: Keys, tenant: str, name: str) -> str:
    return f"{keys.prefix}tenant:{tenant}:program:{name}"


def _names(keys: Keys, tenant: str) -> str:
    return f"{keys.prefix}tenant:{tenant}:programs"


def put(
    keys: Keys, tenant: str, program: dict[str, Any], *, source: str | None = None
) -> Op[tuple[StoredProgram, PutOutcome]]:
    """Store a checked program as ``program["program"]@program["version"]`` (version
    default 1). Returns the stored version (the existing one unless ``created``) and the
    outcome: ``created``, ``exists`` (same content), ``conflict`` (other content) or
    ``deleted`` (that version was deleted; versions are never reused)."""
    name, version = str(program["program"]), int(program.get("version", 1))
    base = _base(keys, tenant, name)
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
    script_keys = [f"{base}:{version}", f"{base}:versions", f"{base}:live", _names(keys, tenant)]
    outcome: PutOutcome = as_str((yield Eval(_PUT, keys=script_keys, args=args)))  # type: ignore[assignment]
    stored = yield from get(keys, tenant, name, version)
    assert stored is not None  # versions are never removed
    return stored, outcome


def get(keys: Keys, tenant: str, name: str, version: int) -> Op[StoredProgram | None]:
    """The version with its body, deleted or not; None when the tenant has no such one."""
    record = yield call("hgetall", f"{_base(keys, tenant, name)}:{version}")
    if not record:
        return None
    rec = {as_str(k): as_str(v) for k, v in record.items()}
    info = _info(rec)
    return StoredProgram(
        **vars(info), program=json.loads(rec["program"]), source=rec["source"] or None
    )


def latest(keys: Keys, tenant: str, name: str) -> Op[StoredProgram | None]:
    """The highest version of ``name`` that is not deleted, or None."""
    top = yield call("zrange", f"{_base(keys, tenant, name)}:live", -1, -1)
    return (yield from get(keys, tenant, name, int(as_str(top[0])))) if top else None


def versions(keys: Keys, tenant: str, name: str) -> Op[list[ProgramInfo]]:
    """Every version of ``name``, deleted ones included, lowest first."""
    base = _base(keys, tenant, name)
    numbers = [as_str(v) for v in (yield call("zrange", f"{base}:versions", 0, -1))]
    return (yield from _infos([f"{base}:{v}" for v in numbers]))


def list_latest(
    keys: Keys, tenant: str, *, limit: int = 100, after: str | None = None
) -> Op[tuple[list[ProgramInfo], str | None]]:
    """One page of the tenant's programs by name, each at its latest live version (names
    whose versions are all deleted are left out). ``limit`` (default 100) names are
    scanned after the name ``after`` (default: from the start). Returns the page and the
    cursor of the next one (None at the end)."""
    start = f"({after}" if after else "-"
    names = [
        as_str(n)
        for n in (yield call("zrangebylex", _names(keys, tenant), start, "+", start=0, num=limit))
    ]
    tops = (
        (yield Pipe([call("zrange", f"{_base(keys, tenant, n)}:live", -1, -1) for n in names]))
        if names
        else []
    )
    found = [
        f"{_base(keys, tenant, name)}:{as_str(top[0])}"
        for name, top in zip(names, tops, strict=True)
        if top
    ]
    cursor = names[-1] if len(names) == limit else None
    return (yield from _infos(found)), cursor


def delete(keys: Keys, tenant: str, name: str, version: int) -> Op[StoredProgram | None]:
    """Mark a version deleted (idempotent; the first time is kept). Returns it, or None
    when the tenant has no such version."""
    base = _base(keys, tenant, name)
    script_keys = [f"{base}:{version}", f"{base}:live"]
    if not (yield Eval(_DELETE, keys=script_keys, args=[str(version), repr(time.time())])):
        return None
    return (yield from get(keys, tenant, name, version))


def _infos(found: list[str]) -> Op[list[ProgramInfo]]:
    if not found:
        return []
    replies = yield Pipe([call("hmget", key, list(_SUMMARY)) for key in found])
    out = []
    for values in replies:
        if values[0] is not None:
            out.append(_info({k: as_str(v) for k, v in zip(_SUMMARY, values, strict=True)}))
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


# -- program bodies by content hash ----------------------------------------------------------


def put_body(keys: Keys, program_hash: str, body: dict[str, Any]) -> Op[None]:
    """Store a program body under its hash once (write-once: a body never changes)."""
    yield call("set", keys.program_body(program_hash), json.dumps(body), nx=True)


def get_body(keys: Keys, program_hash: str) -> Op[dict[str, Any] | None]:
    """The body stored under ``program_hash``, or None."""
    raw = yield call("get", keys.program_body(program_hash))
    if raw is None:
        return None
    data = json.loads(raw)
    return data if isinstance(data, dict) else None
