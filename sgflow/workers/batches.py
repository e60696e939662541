"""Batch records in the run store's Redis: creation in bulk, expiry, finalization, the sweep.

A batch is many runs of one program, each line a run with ``parent=<batch id>``. This module
holds everything about a batch that both sides need: the API (:mod:`sgflow.service.batches`,
which validates requests, renders views and streams results) and the workers
(:mod:`sgflow.workers.tasks`: the fan-out task, the hook after each line, the sweep in the
reaper loop). It knows nothing of HTTP. Line progress is never counted here: the run store
counts a line once, in the same script that finishes its run (``batch:<id>:lines`` +
``batch:<id>:counts``), so ``request_counts`` always add up.

Keys, under the run store's prefix:

=========================== ========== ==================================================
``batch:<id>``              hash       ``id, tenant, program, program_hash, status,
                                       total, cancelled, error`` and the times
                                       ``created_at, in_progress_at, deadline_at,
                                       cancelling_at, expired_at, finalized_at`` and
                                       ``completed_at | failed_at | cancelled_at``
``batch:<id>:runs``         list       ``[custom_id, run_id]`` (JSON) per line, input order
``tenant:<t>:batches``      sorted set batch ids by ``created_at`` (entries of expired
                                       batches are dropped when listing)
``batches:open``            sorted set batches not finalized yet, by ``created_at``: the
                                       sweep's index
``batches:deadlines``       sorted set open batches with a deadline, by ``deadline_at``
=========================== ========== ==================================================

Life of a batch. :func:`create_batch` stores it ``validating``; :func:`add_lines` creates
its runs 500 per pipeline (records first; Celery messages are sent afterwards by the fan-out
task, and a lost message is re-sent by the reaper: "accepted is never lost");
:func:`start_batch` makes it ``in_progress``. Once every line is final, :func:`finalize`
(one Lua script, so concurrent finalizers agree) writes the final status, its timestamp
and the TTL (``result_ttl_s``, as run records) on every batch key, and removes it from the
sweep's indexes. Until then the public status (:func:`batch_status`) is ``finalizing``
(or ``cancelling`` after a cancel). Past its deadline :func:`expire_batch` stamps
``expired_at``, counts every unfinished line ``expired`` (failed), cancels its run and
finalizes ``expired``.

Who finalizes: whoever looks first. A read through the API (:func:`refresh_batch`); the
worker that finished a line (:func:`after_line`); and the reaper loop's :func:`sweep`,
which also expires batches past their deadline that nobody reads and fails batches stuck in
``validating`` (the API died while creating them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sgflow.errors import SgflowError
from sgflow.workers.records import BatchProgress
from sgflow.workers.records import as_str as _s
from sgflow.workers.store import RunStore

__all__ = [
    "CHUNK",
    "STALE_VALIDATING_S",
    "TASK_START",
    "BatchRecord",
    "BatchStore",
    "after_line",
    "batch_status",
    "cancel_unfinished",
    "expire_batch",
    "fail_batch",
    "finalize",
    "queued_lines",
    "refresh_batch",
    "sweep",
    "unfinished",
    "warm_prefix",
]

log = logging.getLogger("sgflow.workers.batches")

CHUNK = 500  # lines per pipeline when creating, and per page when reading
TASK_START = "sgflow.batch_start"  # the Celery task that warms the prefix, then fans out
STALE_VALIDATING_S = 600.0  # a batch still `validating` this long after creation failed

# KEYS batch, counts, runs, lines, open, deadlines. ARGV id, now, ttl.
# Returns {outcome, status}: finalized | final (already) | pending | validating | not_found.
_FINALIZE = r"""
local b = redis.call('HMGET', KEYS[1], 'status', 'total', 'cancelled', 'expired_at',
  'finalized_at')
if not b[1] then return {'not_found', ''} end
if b[5] and b[5] ~= '' then return {'final', b[1]} end
if b[1] == 'validating' then return {'validating', b[1]} end
local c = redis.call('HMGET', KEYS[2], 'completed', 'failed')
if (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0) < tonumber(b[2]) then
  return {'pending', b[1]}
end
local status = 'completed'
if b[1] == 'failed' then status = 'failed'
elseif b[3] == '1' then status = 'cancelled'
elseif b[4] and b[4] ~= '' then status = 'expired' end
redis.call('HSET', KEYS[1], 'status', status, 'finalized_at', ARGV[2])
if status == 'completed' or status == 'cancelled' then
  redis.call('HSET', KEYS[1], status .. '_at', ARGV[2])
end
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
return {'finalized', status}
"""

# KEYS batch. ARGV now. 1 when the batch is (now, or already) expiring: in progress, not
# final, its deadline passed.
_BEGIN_EXPIRY = r"""
local b = redis.call('HMGET', KEYS[1], 'status', 'deadline_at', 'expired_at', 'finalized_at')
if b[1] ~= 'in_progress' or (b[4] and b[4] ~= '') then return 0 end
if b[3] and b[3] ~= '' then return 1 end
if not b[2] or b[2] == '' or tonumber(b[2]) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'expired_at', ARGV[1])
return 1
"""


@dataclass(frozen=True)
class BatchRecord:
    """The ``batch:<id>`` hash; times are epoch seconds, ``None`` where not reached."""

    id: str
    tenant: str
    program: str
    program_hash: str
    status: str
    total: int
    cancelled: bool
    error: dict[str, Any] | None
    created_at: float
    in_progress_at: float | None
    deadline_at: float | None
    cancelling_at: float | None
    expired_at: float | None
    finalized_at: float | None
    completed_at: float | None
    failed_at: float | None
    cancelled_at: float | None

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> BatchRecord:
        def t(name: str) -> float | None:
            return float(raw[name]) if raw.get(name) else None

        return cls(
            id=raw["id"],
            tenant=raw["tenant"],
            program=raw["program"],
            program_hash=raw.get("program_hash", ""),
            status=raw["status"],
            total=int(raw["total"]),
            cancelled=raw.get("cancelled") == "1",
            error=json.loads(raw["error"]) if raw.get("error") else None,
            created_at=float(raw["created_at"]),
            in_progress_at=t("in_progress_at"),
            deadline_at=t("deadline_at"),
            cancelling_at=t("cancelling_at"),
            expired_at=t("expired_at"),
            finalized_at=t("finalized_at"),
            completed_at=t("completed_at"),
            failed_at=t("failed_at"),
            cancelled_at=t("cancelled_at"),
        )


class BatchStore:
    """Batch records, their lines and indexes, in ``runs``' Redis under its prefix."""

    def __init__(self, runs: RunStore) -> None:
        self.runs = runs
        self.redis = runs.redis
        self.prefix = runs.keys.prefix
        self.open_key = f"{self.prefix}batches:open"
        self.deadlines_key = f"{self.prefix}batches:deadlines"
        self._finalize = self.redis.register_script(_FINALIZE)
        self._begin_expiry = self.redis.register_script(_BEGIN_EXPIRY)

    def key(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}"

    def runs_key(self, batch_id: str) -> str:
        return f"{self.key(batch_id)}:runs"

    def tenant_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:batches"

    # -- creating -------------------------------------------------------------------------------

    def create(
        self,
        *,
        batch_id: str,
        tenant: str,
        program: str,
        program_hash: str,
        total: int,
        deadline_at: float | None,
    ) -> BatchRecord:
        """Store a ``validating`` batch and index it for ``tenant`` and the sweep."""
        now = self.runs.clock()
        fields: dict[str, str] = {
            "id": batch_id,
            "tenant": tenant,
            "program": program,
            "program_hash": program_hash,
            "status": "validating",
            "created_at": repr(now),
            "deadline_at": "" if deadline_at is None else repr(deadline_at),
            "total": str(total),
            "cancelled": "0",
        }
        pipe = self.redis.pipeline()
        pipe.hset(self.key(batch_id), mapping=dict[Any, Any](fields))
        pipe.zadd(self.tenant_key(tenant), {batch_id: now})
        pipe.zadd(self.open_key, {batch_id: now})
        if deadline_at is not None:
            pipe.zadd(self.deadlines_key, {batch_id: deadline_at})
        pipe.execute()
        return BatchRecord.from_hash(fields)

    def add_lines(
        self,
        record: BatchRecord,
        lines: Sequence[tuple[str, str, dict[str, Any]]],
        *,
        priority: int = 0,
    ) -> None:
        """Create the runs of ``(custom_id, run_id, inputs)`` lines, in input order, one
        pipeline per :data:`CHUNK` lines: each run as :meth:`RunStore.create` stores it, then
        the chunk's ``[custom_id, run_id]`` pairs. Sends no Celery message."""
        for start in range(0, len(lines), CHUNK):
            chunk = lines[start : start + CHUNK]
            self.runs.create_many(
                {
                    "run_id": run_id,
                    "tenant": record.tenant,
                    "program": record.program,
                    "program_hash": record.program_hash,
                    "inputs": inputs,
                    "parent": record.id,
                    "priority": priority,
                }
                for _, run_id, inputs in chunk
            )
            self.redis.rpush(
                self.runs_key(record.id), *[json.dumps([cid, rid]) for cid, rid, _ in chunk]
            )
            self.runs.stats.run_submitted(len(chunk))

    def start(self, batch_id: str) -> None:
        """``validating`` → ``in_progress`` (every line exists)."""
        self.update(batch_id, status="in_progress", in_progress_at=repr(self.runs.clock()))

    # -- reading --------------------------------------------------------------------------------

    def lines(self, batch_id: str, start: int, stop: int) -> list[tuple[str, str]]:
        """Lines ``start..stop`` (inclusive, as LRANGE) as ``(custom_id, run_id)``."""
        raw = self.redis.lrange(self.runs_key(batch_id), start, stop)
        pairs = [json.loads(_s(x)) for x in raw]
        return [(str(cid), str(run_id)) for cid, run_id in pairs]

    def pages(self, batch_id: str) -> Iterator[list[tuple[str, str]]]:
        """Every line, :data:`CHUNK` at a time."""
        start = 0
        while True:
            page = self.lines(batch_id, start, start + CHUNK - 1)
            if not page:
                return
            yield page
            start += CHUNK

    def update(self, batch_id: str, **fields: str) -> None:
        self.redis.hset(self.key(batch_id), mapping=dict[Any, Any](fields))

    def get(self, batch_id: str, *, tenant: str | None = None) -> BatchRecord | None:
        """The batch, or ``None``; with ``tenant``, also ``None`` for another tenant's."""
        raw = self.redis.hgetall(self.key(batch_id))
        if not raw:
            return None
        record = BatchRecord.from_hash({_s(a): _s(b) for a, b in raw.items()})
        return None if tenant is not None and record.tenant != tenant else record

    def progress(self, batch_id: str) -> BatchProgress:
        return self.runs.batch_progress(batch_id)

    def list(
        self, tenant: str, *, limit: int = 20, after: str | None = None
    ) -> tuple[list[BatchRecord], bool] | None:
        """A tenant's batches newest first, after the batch id ``after``; and whether there
        are more. ``None`` when ``after`` is not one of the tenant's batches. Entries of
        batches whose keys expired are removed from the index on the way."""
        index = self.tenant_key(tenant)
        top: str | float = "+inf"
        if after is not None:
            score = self.redis.zscore(index, after)
            if score is None:
                return None
            top = f"({score!r}"
        records: list[BatchRecord] = []
        gone: list[str] = []
        more = False
        while True:
            ids = [_s(i) for i in self.redis.zrevrangebyscore(index, top, "-inf", 0, limit + 1)]
            for batch_id in ids:
                record = self.get(batch_id)
                if record is None:
                    gone.append(batch_id)
                elif len(records) == limit:
                    more = True
                    break
                else:
                    records.append(record)
            if more or len(ids) <= limit:
                break
            # expired entries made room: read on below the last id seen
            top = f"({self.redis.zscore(index, ids[-1])!r}"
        if gone:
            self.redis.zrem(index, *gone)
        return records, more


def batch_status(record: BatchRecord, progress: BatchProgress) -> str:
    """The public status (OpenAI's): the stored final status once finalized; before that
    ``validating``, ``failed`` (creation failed), ``cancelling`` after a cancel,
    ``finalizing`` once every line is final (or the deadline cut them off), else
    ``in_progress``."""
    if record.finalized_at is not None or record.status in ("validating", "failed"):
        return record.status
    if record.cancelled:
        return "cancelling"
    if record.expired_at is not None or progress.done >= record.total:
        return "finalizing"
    return "in_progress"


# -- finalizing, expiring, failing --------------------------------------------------------------


def finalize(batches: BatchStore, batch_id: str) -> str | None:
    """Finalize the batch if every line is final and nobody did yet: its final status and
    timestamp, the TTL on its keys (and again on its lines' runs, so results live as long
    as the batch). Returns the final status when finalized now, else ``None``."""
    outcome, status = (
        _s(x)
        for x in batches._finalize(
            keys=[
                batches.key(batch_id),
                batches.runs.keys.batch_counts(batch_id),
                batches.runs_key(batch_id),
                batches.runs.keys.batch_lines(batch_id),
                batches.open_key,
                batches.deadlines_key,
            ],
            args=[batch_id, repr(batches.runs.clock()), batches.runs.result_ttl_s],
        )
    )
    if outcome != "finalized":
        return None
    ttl = batches.runs.result_ttl_s
    keys = batches.runs.keys
    for page in batches.pages(batch_id):
        pipe = batches.redis.pipeline(transaction=False)
        for _, run_id in page:
            for key in (keys.run(run_id), keys.steps(run_id), keys.events(run_id)):
                pipe.expire(key, ttl)
        pipe.execute()
    return status


def unfinished(batches: BatchStore, batch_id: str, page: list[tuple[str, str]]) -> list[str]:
    """The run ids of ``page`` whose lines are not counted yet."""
    ids = [run_id for _, run_id in page]
    marked = batches.redis.hmget(batches.runs.keys.batch_lines(batch_id), ids)
    return [run_id for run_id, m in zip(ids, marked, strict=True) if m is None]


def cancel_unfinished(batches: BatchStore, batch_id: str, *, mark: str | None = None) -> None:
    """Cancel the runs of every line not final yet (queued ones at once, running ones between
    steps); with ``mark``, count those lines ``mark`` first (``expired``)."""
    for page in batches.pages(batch_id):
        for run_id in unfinished(batches, batch_id, page):
            if mark is not None:
                batches.runs.mark_batch_line(batch_id, run_id, mark)
            batches.runs.request_cancel(run_id)


def expire_batch(batches: BatchStore, record: BatchRecord) -> bool:
    """If the deadline passed with lines not final: stamp ``expired_at``, count those lines
    ``expired``, cancel their runs, finalize. Idempotent and safe to run concurrently (an
    interrupted expiry is finished by the next call). Returns whether it expired the batch."""
    if record.deadline_at is None or record.finalized_at is not None:
        return False
    now = batches.runs.clock()
    if not batches._begin_expiry(keys=[batches.key(record.id)], args=[repr(now)]):
        return False
    cancel_unfinished(batches, record.id, mark="expired")
    finalize(batches, record.id)
    return True


def fail_batch(batches: BatchStore, batch_id: str, error: dict[str, Any], *, total: int) -> None:
    """Creation failed: the batch ends ``failed`` with ``error``; its created lines are
    cancelled and the lines never created counted failed, so the counts add up."""
    batches.update(
        batch_id,
        status="failed",
        failed_at=repr(batches.runs.clock()),
        error=json.dumps(error),
    )
    cancel_unfinished(batches, batch_id)
    created = int(batches.redis.llen(batches.runs_key(batch_id)))
    for i in range(created, total):
        batches.runs.mark_batch_line(batch_id, f"line:{i}", "failed")
    finalize(batches, batch_id)


def refresh_batch(batches: BatchStore, record: BatchRecord) -> tuple[BatchRecord, BatchProgress]:
    """The batch and its progress after expiring it (deadline passed) or finalizing it
    (every line final) if that is due: what a read shows."""
    progress = batches.progress(record.id)
    if record.finalized_at is not None:
        return record, progress
    changed = False
    if record.deadline_at is not None and batches.runs.clock() >= record.deadline_at:
        changed = expire_batch(batches, record)
    if not changed and record.status != "validating" and progress.done >= record.total:
        changed = finalize(batches, record.id) is not None
    if not changed:
        return record, progress
    return batches.get(record.id) or record, batches.progress(record.id)


def after_line(batches: BatchStore, run_id: str) -> str | None:
    """A worker finished ``run_id``: if it was a batch's last line, finalize the batch.
    Returns the batch's final status when finalized now."""
    parent = batches.redis.hget(batches.runs.keys.run(run_id), "parent")
    if not parent:
        return None
    batch_id = _s(parent)
    total = batches.redis.hget(batches.key(batch_id), "total")
    if total is None or batches.progress(batch_id).done < int(_s(total)):
        return None
    return finalize(batches, batch_id)


def sweep(batches: BatchStore, *, limit: int = 1000) -> list[tuple[str, str]]:
    """One pass of the reaper loop over open batches (oldest first, at most ``limit`` of
    each index): expire those past their deadline, finalize those whose lines are all final,
    fail those stuck ``validating`` for :data:`STALE_VALIDATING_S`, drop index entries of
    batches whose keys are gone. Returns ``(batch id, what happened)``."""
    now = batches.runs.clock()
    done: list[tuple[str, str]] = []
    due = [_s(x) for x in batches.redis.zrangebyscore(batches.deadlines_key, "-inf", repr(now), 0, limit)]  # fmt: skip
    for batch_id in due:
        record = batches.get(batch_id)
        if record is None:
            batches.redis.zrem(batches.deadlines_key, batch_id)
            batches.redis.zrem(batches.open_key, batch_id)
        elif expire_batch(batches, record):
            done.append((batch_id, "expired"))
    ids = [_s(x) for x in batches.redis.zrange(batches.open_key, 0, limit - 1)]
    if not ids:
        return done
    pipe = batches.redis.pipeline(transaction=False)
    for batch_id in ids:
        pipe.hmget(batches.key(batch_id), ["status", "total", "created_at"])
        pipe.hmget(batches.runs.keys.batch_counts(batch_id), ["completed", "failed"])
    replies = pipe.execute()
    for i, batch_id in enumerate(ids):
        status, total, created = replies[2 * i]
        completed, failed = replies[2 * i + 1]
        if status is None:
            batches.redis.zrem(batches.open_key, batch_id)
            batches.redis.zrem(batches.deadlines_key, batch_id)
            continue
        status = _s(status)
        if status == "validating":
            if now - float(_s(created)) >= STALE_VALIDATING_S:
                error = SgflowError(
                    "batch.creation_interrupted",
                    "the API stopped while creating this batch's lines",
                ).to_dict()
                fail_batch(batches, batch_id, error, total=int(_s(total)))
                done.append((batch_id, "failed"))
            continue
        if int(_s(completed or 0)) + int(_s(failed or 0)) >= int(_s(total)):
            final = finalize(batches, batch_id)
            if final is not None:
                done.append((batch_id, final))
    return done


def queued_lines(batches: BatchStore, batch_id: str) -> Iterator[list[str]]:
    """The run ids of the batch's lines still ``queued``, a page at a time, in input order:
    the lines the fan-out sends messages for (cancelled or expired ones need none)."""
    for page in batches.pages(batch_id):
        pipe = batches.redis.pipeline(transaction=False)
        for _, run_id in page:
            pipe.hget(batches.runs.keys.run(run_id), "status")
        statuses = pipe.execute()
        queued = [rid for (_, rid), st in zip(page, statuses, strict=True) if st is not None and _s(st) == "queued"]  # fmt: skip
        if queued:
            yield queued


# -- warming the shared prefix ------------------------------------------------------------------


def warm_prefix(engine_url: str, prefix: str, *, timeout_s: float = 60.0) -> int | None:
    """Prefill ``prefix`` on the engine once (SGLang's ``RuntimeEndpoint.cache_prefix``:
    ``POST /generate`` with ``max_new_tokens: 0``), so a batch's lines find it cached.
    Best effort: returns the prompt tokens the engine reports, or ``None`` on any failure
    (logged, never raised)."""
    try:
        response = httpx.post(
            f"{engine_url.rstrip('/')}/generate",
            json={"text": prefix, "sampling_params": {"max_new_tokens": 0}},
            timeout=timeout_s,
        )
        response.raise_for_status()
        meta = response.json().get("meta_info") or {}
        tokens = meta.get("prompt_tokens")
        return int(tokens) if isinstance(tokens, int) else 0
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        log.warning("warming a batch prefix failed: %s", exc)
        return None
