"""Batch operations: creation in bulk, reading, expiry, finalization, the sweep.

A batch is many runs of one program, each line a run with ``parent=<batch id>``. This module
holds everything about a batch that both sides need: the API (which validates requests,
renders views and streams results) and the workers (the fan-out task, the hook after each
line, the sweep in the reaper loop). It knows nothing of HTTP or Celery. Line progress is
never counted here: the run store counts a line once, in the same script that finishes its
run (``batch:<id>:lines`` + ``batch:<id>:counts``), so ``request_counts`` always add up.
Batch lines do not count against a tenant's concurrency cap: the batch's own limits
(``max_batch_size`` lines) admit them.

Keys (see :mod:`sgflow.store.records`): ``batch:<id>`` (the :class:`BatchRecord`: ``id,
tenant, program, program_hash, status, total, cancelled, error`` and the times
``created_at, in_progress_at, deadline_at, cancelling_at, expired_at, finalized_at`` and
``completed_at | failed_at | cancelled_at``), ``batch:<id>:runs`` (``[custom_id, run_id]``
per line, input order), ``tenant:<t>:batches``, ``batches:open`` (the sweep's index) and
``batches:deadlines``.

Life of a batch. :func:`create` stores it ``validating``; :func:`add_lines` creates its
runs 500 per pipeline (records first; Celery messages are sent afterwards by the fan-out
task, and a lost message is re-sent by the reaper: "accepted is never lost"); :func:`start`
makes it ``in_progress``. Once every line is final, :func:`finalize` (one Lua script, so
concurrent finalizers agree) writes the final status, its timestamp and the TTL
(``result_ttl_s``, as run records) on every batch key, and removes it from the sweep's
indexes. Until then the public status (:func:`batch_status`) is ``finalizing`` (or
``cancelling`` after a cancel). Past its deadline :func:`expire` stamps ``expired_at``,
counts every unfinished line ``expired`` (failed), cancels its run and finalizes
``expired``.

Who finalizes: whoever looks first. A read through the API (:func:`refresh`); the worker
that finished a line (:func:`after_line`); and the reaper loop's :func:`sweep`, which also
expires batches past their deadline that nobody reads and fails batches stuck in
``validating`` (the API died while creating them).

Each function taking a :class:`StoreConfig` is an operation (:mod:`sgflow.store.ops`); run
it with :class:`~sgflow.store.BatchStore` or :class:`~sgflow.store.AsyncBatchStore`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sgflow.errors import SgflowError
from sgflow.store import runs, stats
from sgflow.store.config import StoreConfig
from sgflow.store.ops import Eval, Lua, Op, Pipe, call
from sgflow.store.records import BatchProgress, BatchRecord, as_str

__all__ = [
    "CHUNK",
    "STALE_VALIDATING_S",
    "add_lines",
    "after_line",
    "batch_status",
    "cancel",
    "cancel_unfinished",
    "create",
    "expire",
    "fail",
    "finalize",
    "get",
    "is_cancelled",
    "lines",
    "list_batches",
    "page_of_lines",
    "queued_lines",
    "refresh",
    "result_page",
    "start",
    "sweep",
    "unfinished",
    "update",
]

CHUNK = 500  # lines per pipeline when creating, and per page when reading
STALE_VALIDATING_S = 600.0  # a batch still `validating` this long after creation failed

# KEYS batch, counts, runs, lines, open, deadlines. ARGV id, now, ttl.
# Returns {outcome, status}: finalized | final (already) | pending | validating | not_found.
_FINALIZE = Lua(r"""
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
""")

# KEYS batch. ARGV now. 1 when the batch is (now, or already) expiring: in progress, not
# final, its deadline passed.
_BEGIN_EXPIRY = Lua(r"""
local b = redis.call('HMGET', KEYS[1], 'status', 'deadline_at', 'expired_at', 'finalized_at')
if b[1] ~= 'in_progress' or (b[4] and b[4] ~= '') then return 0 end
if b[3] and b[3] ~= '' then return 1 end
if not b[2] or b[2] == '' or tonumber(b[2]) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'expired_at', ARGV[1])
return 1
""")


# -- creating -----------------------------------------------------------------------------------


def create(
    cfg: StoreConfig,
    *,
    batch_id: str,
    tenant: str,
    program: str,
    program_hash: str,
    total: int,
    deadline_at: float | None,
    traceparent: str | None = None,
) -> Op[BatchRecord]:
    """Store a ``validating`` batch and index it for ``tenant`` and the sweep;
    ``traceparent`` is the batch's span, which its lines' runs continue."""
    k = cfg.keys
    now = cfg.clock()
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
        "traceparent": traceparent or "",
    }
    steps = [
        call("hset", k.batch(batch_id), mapping=dict[Any, Any](fields)),
        call("zadd", k.tenant_batches(tenant), {batch_id: now}),
        call("zadd", k.batches_open, {batch_id: now}),
    ]
    if deadline_at is not None:
        steps.append(call("zadd", k.batches_deadlines, {batch_id: deadline_at}))
    yield Pipe(steps, transaction=True)
    return BatchRecord.from_hash(fields)


def add_lines(
    cfg: StoreConfig,
    record: BatchRecord,
    lines: Sequence[tuple[str, str, dict[str, Any]]],
    *,
    priority: int = 0,
    programs: Sequence[tuple[str, str]] | None = None,
) -> Op[None]:
    """Create the runs of ``(custom_id, run_id, inputs)`` lines, in input order, one
    pipeline per :data:`CHUNK` lines: each run as :func:`sgflow.store.runs.create` stores
    it, then the chunk's ``[custom_id, run_id]`` pairs. Sends no Celery message. Every line
    runs the batch's program, or with ``programs`` (``(label, program hash)`` per line, an
    OpenAI batch's) its own."""
    for begin in range(0, len(lines), CHUNK):
        chunk = lines[begin : begin + CHUNK]
        own = programs[begin : begin + CHUNK] if programs is not None else None
        yield from runs.create_many(
            cfg,
            (
                {
                    "run_id": run_id,
                    "tenant": record.tenant,
                    "program": own[i][0] if own else record.program,
                    "program_hash": own[i][1] if own else record.program_hash,
                    "inputs": inputs,
                    "parent": record.id,
                    "priority": priority,
                    "traceparent": record.traceparent,
                }
                for i, (_, run_id, inputs) in enumerate(chunk)
            ),
        )
        pairs = [json.dumps([cid, rid]) for cid, rid, _ in chunk]
        yield call("rpush", cfg.keys.batch_runs(record.id), *pairs)
        yield from stats.run_submitted(cfg.keys, len(chunk))


def start(cfg: StoreConfig, batch_id: str) -> Op[None]:
    """``validating`` → ``in_progress`` (every line exists)."""
    yield from update(cfg, batch_id, status="in_progress", in_progress_at=repr(cfg.clock()))


def update(cfg: StoreConfig, batch_id: str, **fields: str) -> Op[None]:
    yield call("hset", cfg.keys.batch(batch_id), mapping=dict[Any, Any](fields))


# -- reading ------------------------------------------------------------------------------------


def get(cfg: StoreConfig, batch_id: str, *, tenant: str | None = None) -> Op[BatchRecord | None]:
    """The batch, or ``None``; with ``tenant``, also ``None`` for another tenant's."""
    raw = yield call("hgetall", cfg.keys.batch(batch_id))
    if not raw:
        return None
    record = BatchRecord.from_hash({as_str(a): as_str(b) for a, b in raw.items()})
    return None if tenant is not None and record.tenant != tenant else record


def is_cancelled(cfg: StoreConfig, batch_id: str) -> Op[bool]:
    """Whether the batch was cancelled (checked once its lines exist)."""
    flag = yield call("hget", cfg.keys.batch(batch_id), "cancelled")
    return flag is not None and as_str(flag) == "1"


def lines(cfg: StoreConfig, batch_id: str, begin: int, stop: int) -> Op[list[tuple[str, str]]]:
    """Lines ``begin..stop`` (inclusive, as LRANGE) as ``(custom_id, run_id)``."""
    raw = yield call("lrange", cfg.keys.batch_runs(batch_id), begin, stop)
    pairs = [json.loads(as_str(x)) for x in raw]
    return [(str(cid), str(run_id)) for cid, run_id in pairs]


def page_of_lines(cfg: StoreConfig, batch_id: str, page: int) -> Op[list[tuple[str, str]]]:
    """Page ``page`` (from 0) of :data:`CHUNK` lines; empty past the end."""
    return lines(cfg, batch_id, page * CHUNK, (page + 1) * CHUNK - 1)


def list_batches(
    cfg: StoreConfig, tenant: str, *, limit: int = 20, after: str | None = None
) -> Op[tuple[list[BatchRecord], bool] | None]:
    """A tenant's batches newest first, after the batch id ``after``; and whether there
    are more. ``None`` when ``after`` is not one of the tenant's batches. Entries of
    batches whose keys expired are removed from the index on the way."""
    index = cfg.keys.tenant_batches(tenant)
    top: str | float = "+inf"
    if after is not None:
        score = yield call("zscore", index, after)
        if score is None:
            return None
        top = f"({score!r}"
    records: list[BatchRecord] = []
    gone: list[str] = []
    more = False
    while True:
        ids = [
            as_str(i) for i in (yield call("zrevrangebyscore", index, top, "-inf", 0, limit + 1))
        ]
        for batch_id in ids:
            record = yield from get(cfg, batch_id)
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
        top = f"({(yield call('zscore', index, ids[-1]))!r}"
    if gone:
        yield call("zrem", index, *gone)
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


def result_page(
    cfg: StoreConfig, batch_id: str, page: list[tuple[str, str]]
) -> Op[list[tuple[str, str, str | None, str | None, str | None]]]:
    """For each ``(custom_id, run_id)`` of ``page``: ``(custom_id, run_id, line status or
    None while not final, output JSON text or None, error JSON text or None)``, in one round
    trip."""
    ids = [run_id for _, run_id in page]
    k = cfg.keys
    replies = yield Pipe(
        [call("hmget", k.batch_lines(batch_id), ids)]
        + [call("hmget", k.run(run_id), ["output", "error"]) for run_id in ids]
    )
    marked, stored = replies[0], replies[1:]
    return [
        (cid, run_id, _text(mark), _text(output), _text(error))
        for (cid, run_id), mark, (output, error) in zip(page, marked, stored, strict=True)
    ]


# -- finalizing, expiring, failing, cancelling -------------------------------------------------


def finalize(cfg: StoreConfig, batch_id: str) -> Op[str | None]:
    """Finalize the batch if every line is final and nobody did yet: its final status and
    timestamp, the TTL on its keys (and again on its lines' runs, so results live as long
    as the batch). Returns the final status when finalized now, else ``None``."""
    k = cfg.keys
    outcome, status = (
        as_str(x)
        for x in (
            yield Eval(
                _FINALIZE,
                keys=[
                    k.batch(batch_id),
                    k.batch_counts(batch_id),
                    k.batch_runs(batch_id),
                    k.batch_lines(batch_id),
                    k.batches_open,
                    k.batches_deadlines,
                ],
                args=[batch_id, repr(cfg.clock()), cfg.result_ttl_s],
            )
        )
    )
    if outcome != "finalized":
        return None
    ttl = cfg.result_ttl_s
    number = 0
    while page := (yield from page_of_lines(cfg, batch_id, number)):
        yield Pipe(
            [
                call("expire", key, ttl)
                for _, run_id in page
                for key in (k.run(run_id), k.steps(run_id), k.events(run_id))
            ]
        )
        number += 1
    return status


def unfinished(cfg: StoreConfig, batch_id: str, page: list[tuple[str, str]]) -> Op[list[str]]:
    """The run ids of ``page`` whose lines are not counted yet."""
    ids = [run_id for _, run_id in page]
    marked = yield call("hmget", cfg.keys.batch_lines(batch_id), ids)
    return [run_id for run_id, m in zip(ids, marked, strict=True) if m is None]


def cancel_unfinished(cfg: StoreConfig, batch_id: str, *, mark: str | None = None) -> Op[None]:
    """Cancel the runs of every line not final yet (queued ones at once, running ones between
    steps); with ``mark``, count those lines ``mark`` first (``expired``)."""
    number = 0
    while page := (yield from page_of_lines(cfg, batch_id, number)):
        for run_id in (yield from unfinished(cfg, batch_id, page)):
            if mark is not None:
                yield from runs.mark_batch_line(cfg, batch_id, run_id, mark)
            yield from runs.request_cancel(cfg, run_id)
        number += 1


def expire(cfg: StoreConfig, record: BatchRecord) -> Op[bool]:
    """If the deadline passed with lines not final: stamp ``expired_at``, count those lines
    ``expired``, cancel their runs, finalize. Idempotent and safe to run concurrently (an
    interrupted expiry is finished by the next call). Returns whether it expired the batch."""
    if record.deadline_at is None or record.finalized_at is not None:
        return False
    now = cfg.clock()
    if not (yield Eval(_BEGIN_EXPIRY, keys=[cfg.keys.batch(record.id)], args=[repr(now)])):
        return False
    yield from cancel_unfinished(cfg, record.id, mark="expired")
    yield from finalize(cfg, record.id)
    return True


def fail(cfg: StoreConfig, batch_id: str, error: dict[str, Any], *, total: int) -> Op[None]:
    """Creation failed: the batch ends ``failed`` with ``error``; its created lines are
    cancelled and the lines never created counted failed, so the counts add up."""
    yield from update(
        cfg, batch_id, status="failed", failed_at=repr(cfg.clock()), error=json.dumps(error)
    )
    yield from cancel_unfinished(cfg, batch_id)
    created = int((yield call("llen", cfg.keys.batch_runs(batch_id))))
    for i in range(created, total):
        yield from runs.mark_batch_line(cfg, batch_id, f"line:{i}", "failed")
    yield from finalize(cfg, batch_id)


def cancel(cfg: StoreConfig, record: BatchRecord) -> Op[None]:
    """Cancel the lines not final yet (queued ones at once, running ones between steps);
    finished lines keep their results. The batch is ``cancelling`` until every line is
    final, then ``cancelled``. A batch already over is left as it is."""
    record, progress = yield from refresh(cfg, record)
    if batch_status(record, progress) not in ("validating", "in_progress"):
        return
    yield from update(cfg, record.id, cancelled="1", cancelling_at=repr(cfg.clock()))
    yield from cancel_unfinished(cfg, record.id)
    yield from finalize(cfg, record.id)


def refresh(cfg: StoreConfig, record: BatchRecord) -> Op[tuple[BatchRecord, BatchProgress]]:
    """The batch and its progress after expiring it (deadline passed) or finalizing it
    (every line final) if that is due: what a read shows."""
    progress = yield from runs.batch_progress(cfg, record.id)
    if record.finalized_at is not None:
        return record, progress
    changed = False
    if record.deadline_at is not None and cfg.clock() >= record.deadline_at:
        changed = yield from expire(cfg, record)
    if not changed and record.status != "validating" and progress.done >= record.total:
        changed = (yield from finalize(cfg, record.id)) is not None
    if not changed:
        return record, progress
    fresh = yield from get(cfg, record.id)
    return fresh or record, (yield from runs.batch_progress(cfg, record.id))


def after_line(cfg: StoreConfig, run_id: str) -> Op[str | None]:
    """A worker finished ``run_id``: if it was a batch's last line, finalize the batch.
    Returns the batch's final status when finalized now."""
    parent = yield call("hget", cfg.keys.run(run_id), "parent")
    if not parent:
        return None
    batch_id = as_str(parent)
    total = yield call("hget", cfg.keys.batch(batch_id), "total")
    if total is None or (yield from runs.batch_progress(cfg, batch_id)).done < int(as_str(total)):
        return None
    return (yield from finalize(cfg, batch_id))


def sweep(cfg: StoreConfig, *, limit: int = 1000) -> Op[list[tuple[str, str]]]:
    """One pass of the reaper loop over open batches (oldest first, at most ``limit`` of
    each index): expire those past their deadline, finalize those whose lines are all final,
    fail those stuck ``validating`` for :data:`STALE_VALIDATING_S`, drop index entries of
    batches whose keys are gone. Returns ``(batch id, what happened)``."""
    k = cfg.keys
    now = cfg.clock()
    done: list[tuple[str, str]] = []
    due = yield call("zrangebyscore", k.batches_deadlines, "-inf", repr(now), 0, limit)
    for batch_id in (as_str(x) for x in due):
        record = yield from get(cfg, batch_id)
        if record is None:
            yield call("zrem", k.batches_deadlines, batch_id)
            yield call("zrem", k.batches_open, batch_id)
        elif (yield from expire(cfg, record)):
            done.append((batch_id, "expired"))
    ids = [as_str(x) for x in (yield call("zrange", k.batches_open, 0, limit - 1))]
    if not ids:
        return done
    replies = yield Pipe(
        [
            step
            for batch_id in ids
            for step in (
                call("hmget", k.batch(batch_id), ["status", "total", "created_at"]),
                call("hmget", k.batch_counts(batch_id), ["completed", "failed"]),
            )
        ]
    )
    for i, batch_id in enumerate(ids):
        status, total, created = replies[2 * i]
        completed, failed = replies[2 * i + 1]
        if status is None:
            yield call("zrem", k.batches_open, batch_id)
            yield call("zrem", k.batches_deadlines, batch_id)
            continue
        status = as_str(status)
        if status == "validating":
            if now - float(as_str(created)) >= STALE_VALIDATING_S:
                error = SgflowError(
                    "batch.creation_interrupted",
                    "the API stopped while creating this batch's lines",
                ).to_dict()
                yield from fail(cfg, batch_id, error, total=int(as_str(total)))
                done.append((batch_id, "failed"))
            continue
        if int(as_str(completed or 0)) + int(as_str(failed or 0)) >= int(as_str(total)):
            final = yield from finalize(cfg, batch_id)
            if final is not None:
                done.append((batch_id, final))
    return done


def queued_lines(cfg: StoreConfig, batch_id: str, page: int) -> Op[list[str] | None]:
    """The run ids of page ``page`` (from 0) of the batch's lines that are still
    ``queued``, in input order (the lines the fan-out sends messages for: cancelled or
    expired ones need none); ``None`` past the last page."""
    lines_ = yield from page_of_lines(cfg, batch_id, page)
    if not lines_:
        return None
    statuses = yield Pipe([call("hget", cfg.keys.run(run_id), "status") for _, run_id in lines_])
    return [
        run_id
        for (_, run_id), st in zip(lines_, statuses, strict=True)
        if st is not None and as_str(st) == "queued"
    ]


def _text(value: Any) -> str | None:
    return None if value is None else as_str(value)
