"""Batches through the API: validate, create in bulk, view, cancel, stream results.

The semantics are OpenAI's Batch API. A batch is validated whole before anything is stored
(unique ``custom_id``\\ s, every line's inputs against the program's schema, at most
``max_batch_size`` lines; the body itself at most ``max_batch_bytes``); then its records
are written in bulk (:meth:`~sgflow.store.BatchStore.add_lines`: the runs of 500
lines per Redis pipeline), the batch becomes ``in_progress`` and one Celery message,
``sgflow.batch_start``, goes to the workers, before the 202. That worker task warms the
program's shared prefix on the engine (best effort) and then sends one message per line: a
10,000-line batch is accepted in about 3 s (a minute when each line was created alone), and
no request waits on the engine. If the message is lost, the reaper re-sends the lines'
messages (stale queued runs), so an accepted batch is never lost.

Statuses: ``validating`` (lines being created) → ``in_progress`` → ``finalizing`` (every line
final, the batch's end not written yet) → ``completed``; or ``failed`` (creation failed),
``cancelling`` → ``cancelled``, ``expired`` (the deadline cut lines off; they count as
failed). The records, the expiry, the finalization (final status, ``*_at`` timestamp, TTL)
and the workers' sweep live in :mod:`sgflow.store.batches`, shared with the workers; this
module adds what only the API does.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sgflow import traces
from sgflow.grammars.validation import validation_errors
from sgflow.programs.compiler import program_hash
from sgflow.programs.model import Program
from sgflow.service.auth import Tenant
from sgflow.service.errors import ApiError
from sgflow.service.offload import run_cpu
from sgflow.service.runs import RunSubmitter
from sgflow.store import AsyncBatchStore, BatchProgress, BatchRecord, batch_status

__all__ = [
    "BATCH_STATUSES",
    "BatchLine",
    "BatchRecord",
    "batch_status",
    "batch_view",
    "cancel_batch",
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


@dataclass(frozen=True)
class BatchLine:
    """One input line: its ``custom_id`` and the program inputs."""

    custom_id: str
    inputs: dict[str, Any]


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
        "in_progress_at": record.in_progress_at,
        "deadline_at": record.deadline_at,
        "expires_at": record.deadline_at,
        "completed_at": record.completed_at,
        "failed_at": record.failed_at,
        "expired_at": record.expired_at,
        "cancelling_at": record.cancelling_at,
        "cancelled_at": record.cancelled_at,
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


def _checked(program: Program, lines: list[BatchLine]) -> tuple[str, dict[str, Any]]:
    """The program's hash and body, once every line's inputs are valid (422 with the first
    bad line's pointer otherwise)."""
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
    return program_hash(program), program.model_dump(mode="json", by_alias=True, exclude_none=True)


async def submit_batch(
    submitter: RunSubmitter,
    batches: AsyncBatchStore,
    tenant: Tenant,
    *,
    program: Any,
    items: Any,
    deadline_s: Any = None,
    max_lines: int,
    priority: int = 0,
) -> BatchRecord:
    """Validate a whole batch, then store it with one run per line and send the workers its
    start message.

    Raises :class:`ApiError`: 413 ``limit.batch_size`` past ``max_lines``; 422 with the
    pointer of the first bad line, program or deadline; 404/410 for the program reference.
    Nothing is stored when it raises before the batch record is created; if creating runs
    fails half way, the batch ends ``failed``, its created lines are cancelled and the rest
    counted failed.
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
    lines = await run_cpu(parse_lines, items)
    resolved, label = await submitter.resolve_program(tenant, program)
    # the body is stored once by its hash, so every line runs the version resolved now
    phash, dumped = await run_cpu(_checked, resolved, lines)
    await submitter.bodies.put(phash, dumped)
    deadline_at = None if deadline_s is None else time.time() + float(deadline_s)
    return await open_batch(
        submitter,
        batches,
        tenant,
        program=(label, phash),
        lines=[(line.custom_id, uuid.uuid4().hex, line.inputs) for line in lines],
        deadline_at=deadline_at,
        priority=priority,
    )


async def open_batch(
    submitter: RunSubmitter,
    batches: AsyncBatchStore,
    tenant: Tenant,
    *,
    program: tuple[str, str],
    lines: list[tuple[str, str, dict[str, Any]]],
    deadline_at: float | None,
    priority: int = 0,
    programs: list[tuple[str, str]] | None = None,
    before_lines: Callable[[BatchRecord], Awaitable[None]] | None = None,
) -> BatchRecord:
    """Store a checked batch of ``(custom_id, run_id, inputs)`` lines running ``program``
    (``(label, program hash)``; or each line its own, ``programs``), create its runs, start
    it and send the workers its start message. ``before_lines`` stores what else belongs to
    the batch before its lines exist (an OpenAI batch's facts). If creating runs fails half
    way, the batch ends ``failed``, its created lines are cancelled and the rest counted
    failed. The batch is a span (``batch``); every line's run continues it."""
    batch_id = "batch_" + uuid.uuid4().hex
    with traces.span(
        "batch", attributes={"sgflow.batch.id": batch_id, "sgflow.batch.lines": len(lines)}
    ):
        record = await batches.create(
            batch_id=batch_id,
            tenant=tenant.name,
            program=program[0],
            program_hash=program[1],
            total=len(lines),
            deadline_at=deadline_at,
            traceparent=traces.traceparent(),
        )
        if before_lines is not None:
            await before_lines(record)
        try:
            await batches.add_lines(record, lines, priority=priority, programs=programs)
            await batches.start(batch_id)
            if await batches.is_cancelled(batch_id):
                await batches.cancel_unfinished(batch_id)  # cancelled while its lines were made
        except Exception as exc:
            err = (
                exc
                if isinstance(exc, ApiError)
                else ApiError(500, "internal", "creating runs failed")
            )
            await batches.fail(batch_id, err.to_body()["error"], total=len(lines))
            raise
        await submitter.send_batch_start(batch_id, priority=priority)
        return await batches.get(batch_id) or record


# -- cancellation and results -------------------------------------------------------------------


async def cancel_batch(batches: AsyncBatchStore, record: BatchRecord) -> None:
    """Cancel the lines not final yet (queued ones at once, running ones between steps);
    finished lines keep their results. The batch is ``cancelling`` until every line is
    final, then ``cancelled``. A batch already over is left as it is."""
    await batches.cancel(record)


_LINE_ERRORS = {
    "cancelled": ("run.cancelled", "the line was cancelled with its batch"),
    "expired": ("batch.expired", "the batch deadline passed before this line finished"),
}


async def result_rows(batches: AsyncBatchStore, batch_id: str) -> AsyncIterator[str]:
    """The results as JSONL, one line per input in input order: ``{"custom_id", "run_id",
    "status"}`` plus ``output`` (succeeded) or ``error: {code, message}`` (failed, cancelled,
    expired); lines not final yet have the status ``in_progress``."""
    async for page in batches.pages(batch_id):
        for cid, run_id, mark, output, error in await batches.result_page(batch_id, page):
            status = mark or "in_progress"
            row: dict[str, Any] = {"custom_id": cid, "run_id": run_id, "status": status}
            if status == "succeeded":
                row["output"] = (json.loads(output) if output else {}).get("output")
            elif status == "failed":
                err = json.loads(error) if error else {}
                row["error"] = {
                    "code": err.get("code", "run.failed"),
                    "message": err.get("message", "the run failed"),
                }
            elif status in _LINE_ERRORS:
                code, message = _LINE_ERRORS[status]
                row["error"] = {"code": code, "message": message}
            yield json.dumps(row, ensure_ascii=False) + "\n"
