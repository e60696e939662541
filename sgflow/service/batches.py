"""Batches: many inputs of one program, each line a run with ``parent=<batch id>``.

The semantics are OpenAI's Batch API. A batch is validated whole before anything is stored
(unique ``custom_id``\\ s, every line's inputs against the program's schema, at most
``max_batch_size`` lines); then one run per line is created and enqueued. Progress is never
counted here: the run store counts a line once, in the same script that finishes its run
(``batch:<id>:lines`` + ``batch:<id>:counts``), so ``request_counts`` always add up.

Keys, under the run store's prefix:

=========================== ========== ==================================================
``batch:<id>``              hash       ``id, tenant, program, status`` (stored:
                                       ``validating | in_progress | failed``),
                                       ``created_at, deadline_at, total, cancelled,
                                       cancelled_at, expired_at, error``
``batch:<id>:runs``         list       ``[custom_id, run_id]`` (JSON) per line, input order
``tenant:<t>:batches``      sorted set batch ids by ``created_at``
=========================== ========== ==================================================

The public status is derived on read (:func:`batch_status`): ``cancelled`` / ``cancelling``
once a cancel was requested (until every line is final), ``expired`` once the deadline cut
lines off, ``completed`` when every line is final, else the stored status. ``finalizing`` is
never reported: results are kept per line, there is nothing to assemble at the end.
Expiry is lazy: the first read past the deadline marks the unfinished lines ``expired``
(then cancels their runs), and those lines count as failed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sgflow.programs.executor import validation_errors
from sgflow.programs.model import Program
from sgflow.service.auth import Tenant
from sgflow.service.errors import ApiError
from sgflow.service.runs import RunSubmitter
from sgflow.workers.records import BatchProgress
from sgflow.workers.records import as_str as _s
from sgflow.workers.store import RunStore

__all__ = [
    "BATCH_STATUSES",
    "BatchLine",
    "BatchRecord",
    "BatchStore",
    "batch_status",
    "batch_view",
    "cancel_batch",
    "refresh_batch",
    "result_rows",
    "submit_batch",
]

BATCH_STATUSES = (
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
)
_MAX_CUSTOM_ID = 256
_MAX_DEADLINE_S = 7 * 24 * 3600
_PAGE = 500


@dataclass(frozen=True)
class BatchLine:
    """One input line: its ``custom_id`` and the program inputs."""

    custom_id: str
    inputs: dict[str, Any]


@dataclass(frozen=True)
class BatchRecord:
    """The ``batch:<id>`` hash; times are epoch seconds."""

    id: str
    tenant: str
    program: str
    status: str
    created_at: float
    deadline_at: float | None
    total: int
    cancelled: bool
    cancelled_at: float | None
    expired_at: float | None
    error: dict[str, Any] | None

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> BatchRecord:
        return cls(
            id=raw["id"],
            tenant=raw["tenant"],
            program=raw["program"],
            status=raw["status"],
            created_at=float(raw["created_at"]),
            deadline_at=float(raw["deadline_at"]) if raw.get("deadline_at") else None,
            total=int(raw["total"]),
            cancelled=raw.get("cancelled") == "1",
            cancelled_at=float(raw["cancelled_at"]) if raw.get("cancelled_at") else None,
            expired_at=float(raw["expired_at"]) if raw.get("expired_at") else None,
            error=json.loads(raw["error"]) if raw.get("error") else None,
        )


class BatchStore:
    """Batch records, their lines and the tenant index, in the run store's Redis and prefix."""

    def __init__(self, runs: RunStore) -> None:
        self.runs = runs
        self.redis = runs.redis
        self.prefix = runs.keys.prefix

    def key(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}"

    def create(
        self, *, batch_id: str, tenant: str, program: str, total: int, deadline_at: float | None
    ) -> BatchRecord:
        """Store a ``validating`` batch and index it for ``tenant``."""
        now = time.time()
        fields: dict[str, str] = {
            "id": batch_id,
            "tenant": tenant,
            "program": program,
            "status": "validating",
            "created_at": repr(now),
            "deadline_at": "" if deadline_at is None else repr(deadline_at),
            "total": str(total),
            "cancelled": "0",
        }
        pipe = self.redis.pipeline()
        pipe.hset(self.key(batch_id), mapping=dict[Any, Any](fields))
        pipe.zadd(f"{self.prefix}tenant:{tenant}:batches", {batch_id: now})
        pipe.execute()
        return BatchRecord.from_hash(fields)

    def add_lines(self, batch_id: str, lines: list[tuple[str, str]]) -> None:
        """Append ``(custom_id, run_id)`` pairs, in input order."""
        if lines:
            self.redis.rpush(f"{self.key(batch_id)}:runs", *[json.dumps(p) for p in lines])

    def lines(self, batch_id: str, start: int, stop: int) -> list[tuple[str, str]]:
        """Lines ``start..stop`` (inclusive, as LRANGE) as ``(custom_id, run_id)``."""
        raw = self.redis.lrange(f"{self.key(batch_id)}:runs", start, stop)
        pairs = [json.loads(_s(x)) for x in raw]
        return [(str(cid), str(run_id)) for cid, run_id in pairs]

    def update(self, batch_id: str, **fields: str) -> None:
        self.redis.hset(self.key(batch_id), mapping=dict[Any, Any](fields))

    def get(self, batch_id: str, *, tenant: str | None = None) -> BatchRecord | None:
        """The batch, or ``None``; with ``tenant``, also ``None`` for another tenant's."""
        raw = self.redis.hgetall(self.key(batch_id))
        if not raw:
            return None
        record = BatchRecord.from_hash({_s(a): _s(b) for a, b in raw.items()})
        return None if tenant is not None and record.tenant != tenant else record

    def list(
        self, tenant: str, *, limit: int = 20, after: str | None = None
    ) -> tuple[list[BatchRecord], bool]:
        """A tenant's batches newest first, after the batch id ``after``; and whether there
        are more."""
        index = f"{self.prefix}tenant:{tenant}:batches"
        top: str | float = "+inf"
        if after is not None:
            score = self.redis.zscore(index, after)
            if score is None:
                raise ApiError(
                    422, "request.invalid", f"there is no batch {after}", field="query:after"
                )
            top = f"({score!r}"
        ids = self.redis.zrevrangebyscore(index, top, "-inf", start=0, num=limit + 1)
        records = [r for r in (self.get(_s(i)) for i in ids[:limit]) if r is not None]
        return records, len(ids) > limit


def batch_status(record: BatchRecord, progress: BatchProgress) -> str:
    """The public status of a batch from its record and its line counters."""
    done = progress.done >= record.total
    if record.cancelled:
        return "cancelled" if done else "cancelling"
    if record.expired_at is not None:
        return "expired"
    if record.status in ("validating", "failed"):
        return record.status
    return "completed" if done else "in_progress"


def batch_view(record: BatchRecord, progress: BatchProgress) -> dict[str, Any]:
    """The public JSON of a batch."""
    return {
        "id": record.id,
        "object": "batch",
        "status": batch_status(record, progress),
        "program": record.program,
        "request_counts": {
            "total": record.total,
            "completed": progress.completed,
            "failed": progress.failed,
        },
        "created_at": record.created_at,
        "deadline_at": record.deadline_at,
        "cancelled_at": record.cancelled_at,
        "expired_at": record.expired_at,
        "errors": record.error,
        "results_url": f"/v1/batches/{record.id}/results",
    }


# -- submitting -------------------------------------------------------------------------------


def parse_lines(items: Any) -> list[BatchLine]:
    """Check the ``inputs`` list of a batch: objects ``{"custom_id", "inputs"}`` with unique,
    non-empty ``custom_id``\\ s. Raises 422 ``request.invalid`` with the JSON pointer."""
    if not isinstance(items, list) or not items:
        raise ApiError(422, "request.invalid", "`inputs` must be a non-empty list", field="/inputs")
    seen: dict[str, int] = {}
    out: list[BatchLine] = []
    for i, item in enumerate(items):
        where = f"/inputs/{i}"
        if not isinstance(item, dict):
            raise ApiError(422, "request.invalid", f"line {i + 1} is not an object", field=where)
        unknown = sorted(set(item) - {"custom_id", "inputs"})
        if unknown:
            raise ApiError(
                422,
                "request.invalid",
                f"line {i + 1}: unknown field `{unknown[0]}`",
                field=f"{where}/{unknown[0]}",
            )
        cid = item.get("custom_id")
        if not isinstance(cid, str) or not cid or len(cid) > _MAX_CUSTOM_ID:
            raise ApiError(
                422,
                "request.invalid",
                f"line {i + 1}: `custom_id` must be a string of 1..{_MAX_CUSTOM_ID} characters",
                field=f"{where}/custom_id",
                limit=_MAX_CUSTOM_ID,
            )
        if cid in seen:
            raise ApiError(
                422,
                "batch.duplicate_custom_id",
                f"line {i + 1}: custom_id {cid!r} is already used by line {seen[cid] + 1}",
                field=f"{where}/custom_id",
                hint="every line needs its own custom_id",
            )
        seen[cid] = i
        inputs = item.get("inputs", {})
        if not isinstance(inputs, dict):
            raise ApiError(
                422,
                "request.invalid",
                f"line {i + 1}: `inputs` must be an object",
                field=f"{where}/inputs",
            )
        out.append(BatchLine(cid, inputs))
    return out


def _check_inputs(program: Program, lines: list[BatchLine]) -> None:
    for i, line in enumerate(lines):
        problems = validation_errors(line.inputs, program.inputs, limit=1)
        if problems:
            pointer = problems[0]["pointer"].rstrip("/")
            raise ApiError(
                422,
                "input.invalid",
                f"line {i + 1} ({line.custom_id!r}): inputs{pointer or ''}: "
                f"{problems[0]['message']}",
                field=f"/inputs/{i}/inputs{pointer}",
            )


def submit_batch(
    submitter: RunSubmitter,
    batches: BatchStore,
    tenant: Tenant,
    *,
    program: Any,
    items: Any,
    deadline_s: Any = None,
    max_lines: int,
) -> BatchRecord:
    """Validate a whole batch, then store it and create + enqueue one run per line.

    Raises :class:`ApiError`: 413 ``limit.batch_size`` past ``max_lines``; 422 with the
    pointer of the first bad line, program or deadline; 404/410 for the program reference.
    Nothing is stored when it raises before the first run is created; if creating runs fails
    half way, the batch ends ``failed``, its created lines are cancelled and the rest counted
    failed.
    """
    if isinstance(items, list) and len(items) > max_lines:
        raise ApiError(
            413,
            "limit.batch_size",
            f"the batch has {len(items)} lines; the limit is {max_lines}",
            field="/inputs",
            limit=max_lines,
            hint="split the inputs into several batches",
        )
    if deadline_s is not None and (
        isinstance(deadline_s, bool)
        or not isinstance(deadline_s, int | float)
        or not 0 < deadline_s <= _MAX_DEADLINE_S
    ):
        raise ApiError(
            422,
            "request.invalid",
            f"`deadline_s` must be a number of seconds in (0, {_MAX_DEADLINE_S}]",
            field="/deadline_s",
            limit=_MAX_DEADLINE_S,
        )
    lines = parse_lines(items)
    resolved, label = submitter.resolve_program(tenant, program)
    _check_inputs(resolved, lines)
    # pin the version resolved now, so every line runs the same program
    ref = program if label == "inline" else label
    batch_id = "batch_" + uuid.uuid4().hex
    deadline_at = None if deadline_s is None else time.time() + float(deadline_s)
    record = batches.create(
        batch_id=batch_id,
        tenant=tenant.name,
        program=label,
        total=len(lines),
        deadline_at=deadline_at,
    )
    created: list[tuple[str, str]] = []
    pushed = 0
    try:
        for line in lines:
            run = submitter.submit(
                tenant,
                {"program": ref, "inputs": line.inputs},
                parent=batch_id,
                limit_active=False,
            ).run
            created.append((line.custom_id, run.id))
            if len(created) - pushed >= _PAGE:
                batches.add_lines(batch_id, created[pushed:])
                pushed = len(created)
    except Exception as exc:
        batches.add_lines(batch_id, created[pushed:])
        _fail(batches, record, len(created), exc)
        raise
    batches.add_lines(batch_id, created[pushed:])
    batches.update(batch_id, status="in_progress")
    return batches.get(batch_id) or record


def _fail(batches: BatchStore, record: BatchRecord, created: int, exc: Exception) -> None:
    err = exc if isinstance(exc, ApiError) else ApiError(500, "internal", "creating runs failed")
    batches.update(record.id, status="failed", error=json.dumps(err.to_body()["error"]))
    for page in _run_ids(batches, record.id):
        for run_id in _unfinished(batches, record.id, page):
            batches.runs.request_cancel(run_id)
    for i in range(created, record.total):
        batches.runs.mark_batch_line(record.id, f"line:{i}", "failed")


# -- reading, expiry and cancellation -----------------------------------------------------------


def _run_ids(batches: BatchStore, batch_id: str) -> Iterator[list[tuple[str, str]]]:
    start = 0
    while True:
        page = batches.lines(batch_id, start, start + _PAGE - 1)
        if not page:
            return
        yield page
        start += _PAGE


def _unfinished(batches: BatchStore, batch_id: str, page: list[tuple[str, str]]) -> list[str]:
    ids = [run_id for _, run_id in page]
    marked = batches.redis.hmget(batches.runs.keys.batch_lines(batch_id), ids)
    return [run_id for run_id, m in zip(ids, marked, strict=True) if m is None]


def refresh_batch(batches: BatchStore, record: BatchRecord) -> tuple[BatchRecord, BatchProgress]:
    """The batch and its progress, expiring it first if its deadline passed with lines not
    final: each such line is counted ``expired`` (failed), then its run is cancelled."""
    progress = batches.runs.batch_progress(record.id)
    if (
        record.deadline_at is None
        or record.expired_at is not None
        or record.status != "in_progress"
        or progress.done >= record.total
        or time.time() < record.deadline_at
    ):
        return record, progress
    for page in _run_ids(batches, record.id):
        for run_id in _unfinished(batches, record.id, page):
            batches.runs.mark_batch_line(record.id, run_id, "expired")
            batches.runs.request_cancel(run_id)
    batches.update(record.id, expired_at=repr(time.time()))
    fresh = batches.get(record.id) or record
    return fresh, batches.runs.batch_progress(record.id)


def cancel_batch(batches: BatchStore, record: BatchRecord) -> None:
    """Cancel the lines not final yet (queued ones at once, running ones between steps);
    finished lines keep their results. A batch already over is left as it is."""
    record, progress = refresh_batch(batches, record)
    if batch_status(record, progress) not in ("validating", "in_progress"):
        return
    batches.update(record.id, cancelled="1", cancelled_at=repr(time.time()))
    for page in _run_ids(batches, record.id):
        for run_id in _unfinished(batches, record.id, page):
            batches.runs.request_cancel(run_id)


_LINE_ERRORS = {
    "cancelled": ("run.cancelled", "the line was cancelled with its batch"),
    "expired": ("batch.expired", "the batch deadline passed before this line finished"),
}


def result_rows(batches: BatchStore, batch_id: str) -> Iterator[str]:
    """The results as JSONL, one line per input in input order: ``{"custom_id", "run_id",
    "status"}`` plus ``output`` (succeeded) or ``error: {code, message}`` (failed, cancelled,
    expired); lines not final yet have the status ``in_progress``."""
    runs = batches.runs
    for page in _run_ids(batches, batch_id):
        ids = [run_id for _, run_id in page]
        marked = batches.redis.hmget(runs.keys.batch_lines(batch_id), ids)
        pipe = batches.redis.pipeline()
        for run_id in ids:
            pipe.hmget(runs.keys.run(run_id), ["output", "error"])
        stored = pipe.execute()
        for (cid, run_id), mark, (output, error) in zip(page, marked, stored, strict=True):
            status = _s(mark) if mark is not None else "in_progress"
            row: dict[str, Any] = {"custom_id": cid, "run_id": run_id, "status": status}
            if status == "succeeded":
                row["output"] = (json.loads(_s(output)) if output else {}).get("output")
            elif status == "failed":
                err = json.loads(_s(error)) if error else {}
                row["error"] = {
                    "code": err.get("code", "run.failed"),
                    "message": err.get("message", "the run failed"),
                }
            elif status in _LINE_ERRORS:
                code, message = _LINE_ERRORS[status]
                row["error"] = {"code": code, "message": message}
            yield json.dumps(row, ensure_ascii=False) + "\n"
