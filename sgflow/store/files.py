"""OpenAI files and the OpenAI side of a batch.

Keys (under the store's prefix):

- ``tenant:<t>:file:<id>``: a hash ``id, filename, purpose, bytes, created_at, content``
  (the text of the file: batch files are JSONL, so UTF-8). A file is found only under its
  tenant, so another tenant's file is indistinguishable from a missing one.
- ``tenant:<t>:files``: a sorted set of the tenant's file ids by ``created_at`` (what
  ``GET /v1/files`` pages through). A file that expired leaves its id behind; listing skips
  it and drops it.
- ``batch:<id>:openai``: what an OpenAI batch adds to sgflow's batch of the same id
  (:mod:`sgflow.store.batches`): ``endpoint, input_file_id, completion_window, metadata``
  (JSON), ``input`` (a copy of the input file, so the answers can be built after the file is
  deleted) and, once its results are written, ``output_file_id`` / ``error_file_id`` and
  ``results_at``. ``batch:<id>:openai:lock`` is held (``SET NX`` with a TTL) by whoever
  writes the result files, so they are written once.

Operations (see :mod:`sgflow.store.ops`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sgflow.store.ops import Op, Pipe, call
from sgflow.store.records import Keys, as_str

__all__ = [
    "OpenAIBatchFacts",
    "StoredFile",
    "batch_facts",
    "batch_input",
    "delete_file",
    "file_content",
    "get_file",
    "list_files",
    "put_batch_facts",
    "put_file",
    "release_results",
    "set_results",
    "take_results",
]

_META = ("id", "filename", "purpose", "bytes", "created_at")


@dataclass(frozen=True)
class StoredFile:
    """A file's metadata (its content is read apart: :func:`file_content`)."""

    id: str
    filename: str
    purpose: str
    size: int
    created_at: float


@dataclass(frozen=True)
class OpenAIBatchFacts:
    """What an OpenAI batch stores beside sgflow's batch record."""

    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    output_file_id: str | None
    error_file_id: str | None
    results_written: bool = False


def _file_key(keys: Keys, tenant: str, file_id: str) -> str:
    return f"{keys.prefix}tenant:{tenant}:file:{file_id}"


def _index_key(keys: Keys, tenant: str) -> str:
    return f"{keys.prefix}tenant:{tenant}:files"


def _facts_key(keys: Keys, batch_id: str) -> str:
    return f"{keys.prefix}batch:{batch_id}:openai"


def put_file(
    keys: Keys,
    tenant: str,
    stored: StoredFile,
    content: str,
    *,
    ttl_s: int | None = None,
) -> Op[None]:
    """Store ``content`` as ``stored`` of ``tenant`` (expiring after ``ttl_s`` if given)."""
    key = _file_key(keys, tenant, stored.id)
    fields = {
        "id": stored.id,
        "filename": stored.filename,
        "purpose": stored.purpose,
        "bytes": str(stored.size),
        "created_at": repr(stored.created_at),
        "content": content,
    }
    yield call("hset", key, mapping=dict[Any, Any](fields))
    if ttl_s is not None:
        yield call("expire", key, ttl_s)
    yield call("zadd", _index_key(keys, tenant), {stored.id: stored.created_at})


def get_file(keys: Keys, tenant: str, file_id: str) -> Op[StoredFile | None]:
    """``tenant``'s file ``file_id``, or None."""
    raw = yield call("hmget", _file_key(keys, tenant, file_id), list(_META))
    if raw is None or raw[0] is None:
        return None
    v = [as_str(x) for x in raw]
    return StoredFile(v[0], v[1], v[2], int(v[3]), float(v[4]))


def file_content(keys: Keys, tenant: str, file_id: str) -> Op[str | None]:
    """The text of ``tenant``'s file ``file_id``, or None."""
    raw = yield call("hget", _file_key(keys, tenant, file_id), "content")
    return None if raw is None else as_str(raw)


def delete_file(keys: Keys, tenant: str, file_id: str) -> Op[bool]:
    """Delete ``tenant``'s file; False when there was none."""
    n = yield call("delete", _file_key(keys, tenant, file_id))
    yield call("zrem", _index_key(keys, tenant), file_id)
    return bool(n)


def list_files(
    keys: Keys,
    tenant: str,
    *,
    limit: int,
    newest_first: bool = True,
    after: str | None = None,
    purpose: str | None = None,
) -> Op[tuple[list[StoredFile], bool] | None]:
    """Up to ``limit`` of ``tenant``'s files in creation order (newest first unless told),
    starting after the file ``after``, only those of ``purpose`` if given; and whether more
    follow. None when ``after`` is not one of the tenant's files."""
    index = _index_key(keys, tenant)
    start = 0
    if after is not None:
        rank = yield call("zrevrank" if newest_first else "zrank", index, after)
        if rank is None:
            return None
        start = int(rank) + 1
    found: list[StoredFile] = []
    gone: list[str] = []
    page = max(limit, 100)
    while True:
        rng = "zrevrange" if newest_first else "zrange"
        ids = [as_str(x) for x in (yield call(rng, index, start, start + page - 1))]
        if not ids:
            break
        metas = yield Pipe([call("hmget", _file_key(keys, tenant, i), list(_META)) for i in ids])
        for file_id, raw in zip(ids, metas, strict=True):
            if raw is None or raw[0] is None:
                gone.append(file_id)
                continue
            v = [as_str(x) for x in raw]
            stored = StoredFile(v[0], v[1], v[2], int(v[3]), float(v[4]))
            if purpose is None or stored.purpose == purpose:
                found.append(stored)
            if len(found) > limit:
                break
        if len(found) > limit or len(ids) < page:
            break
        start += page
    if gone:
        yield call("zrem", index, *gone)
    return found[:limit], len(found) > limit


def put_batch_facts(
    keys: Keys,
    batch_id: str,
    *,
    endpoint: str,
    input_file_id: str,
    completion_window: str,
    metadata: dict[str, str] | None,
    content: str,
) -> Op[None]:
    """Mark sgflow's batch ``batch_id`` as an OpenAI batch, with its input's text."""
    fields = {
        "endpoint": endpoint,
        "input_file_id": input_file_id,
        "completion_window": completion_window,
        "metadata": json.dumps(metadata),
        "input": content,
    }
    yield call("hset", _facts_key(keys, batch_id), mapping=dict[Any, Any](fields))


def batch_facts(keys: Keys, batch_id: str) -> Op[OpenAIBatchFacts | None]:
    """The OpenAI facts of ``batch_id``, or None for sgflow's own batches."""
    names = [
        "endpoint",
        "input_file_id",
        "completion_window",
        "metadata",
        "output_file_id",
        "error_file_id",
        "results_at",
    ]
    raw = yield call("hmget", _facts_key(keys, batch_id), names)
    if raw is None or raw[0] is None:
        return None
    v = [None if x is None else as_str(x) for x in raw]
    return OpenAIBatchFacts(
        endpoint=str(v[0]),
        input_file_id=str(v[1]),
        completion_window=str(v[2] or "24h"),
        metadata=json.loads(v[3]) if v[3] else None,
        output_file_id=v[4] or None,
        error_file_id=v[5] or None,
        results_written=bool(v[6]),
    )


def batch_input(keys: Keys, batch_id: str) -> Op[str | None]:
    """The copy of an OpenAI batch's input file."""
    raw = yield call("hget", _facts_key(keys, batch_id), "input")
    return None if raw is None else as_str(raw)


def take_results(keys: Keys, batch_id: str, *, hold_s: int) -> Op[bool]:
    """Whether the caller may write the batch's result files now (nobody else is, and they
    are not written yet); the claim lapses after ``hold_s`` (a writer that died)."""
    done = yield call("hexists", _facts_key(keys, batch_id), "results_at")
    if done:
        return False
    got = yield call("set", f"{_facts_key(keys, batch_id)}:lock", "1", nx=True, ex=hold_s)
    return bool(got)


def release_results(keys: Keys, batch_id: str) -> Op[None]:
    yield call("delete", f"{_facts_key(keys, batch_id)}:lock")


def set_results(
    keys: Keys,
    batch_id: str,
    *,
    output_file_id: str | None,
    error_file_id: str | None,
    now: float,
    ttl_s: int,
) -> Op[None]:
    """Record the result files (an empty id: none), drop the input copy, expire with the
    batch."""
    key = _facts_key(keys, batch_id)
    fields = {
        "output_file_id": output_file_id or "",
        "error_file_id": error_file_id or "",
        "results_at": repr(now),
    }
    yield call("hset", key, mapping=dict[Any, Any](fields))
    yield call("hdel", key, "input")
    yield call("expire", key, ttl_s)
