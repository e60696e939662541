"""OpenAI batches on ``POST /v1/batches``: a body with ``input_file_id`` (a file uploaded
to ``POST /v1/files``) instead of sgflow's ``program`` + ``inputs``.

Creating one: the input file is checked whole (:func:`sgflow.openai.parse_batch_file`:
every broken line named, at most 50,000 requests and ``max_file_bytes``), then every line
is planned exactly as ``POST /v1/chat/completions`` / ``POST /v1/responses`` plans one
request (:func:`sgflow.service.routes.openai.plan_request`) and checked against its
program; a line that cannot be planned is a 400 naming it. The lines then become an
sgflow batch (:mod:`sgflow.service.batches`: same records, fan-out, expiry after the 24 h
completion window, cancellation, finalization), each line running its own inline program;
the OpenAI facts (endpoint, input file, metadata) sit beside it
(:mod:`sgflow.store.files`).

Results: once every line is final, the first read of the batch starts writing its output
and error files (:func:`write_results`, in a task of the API process that outlives the
read, which waits for it up to :data:`RESULTS_WAIT_S`; one writer, guarded by a lock in
Redis that lapses after :data:`RESULTS_HOLD_S` if its process died, so they are written
once): a succeeded line's answer is built from its run exactly as the
direct route builds it (``chat_completion`` / ``response_object``); a failed line's error
is OpenAI's error body; a cancelled or expired line is ``batch_cancelled`` /
``batch_expired``. Until then an OpenAI batch that is over shows ``finalizing``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from functools import partial
from typing import Any

from sgflow.errors import SgflowError
from sgflow.openai import (
    BatchLimits,
    BatchRequest,
    RunFold,
    RunRecord,
    batch_error_line,
    batch_object,
    batch_output_line,
    chat_completion,
    openai_error,
    parse_batch_file,
    parse_chat_request,
    parse_responses_request,
    response_object,
)
from sgflow.openai.batches import BATCH_ENDPOINTS
from sgflow.service.auth import Tenant
from sgflow.service.batches import batch_view, open_batch
from sgflow.service.errors import ApiError
from sgflow.service.offload import run_cpu
from sgflow.service.routes.openai import plan_request
from sgflow.service.runs import RunSubmitter, _checked, run_view
from sgflow.settings import Settings
from sgflow.store import (
    AsyncBatchStore,
    AsyncFileStore,
    AsyncProgramStore,
    AsyncRunStore,
    BatchProgress,
    BatchRecord,
    OpenAIBatchFacts,
    StoredFile,
)

__all__ = [
    "COMPLETION_WINDOW_S",
    "MAX_REQUESTS",
    "create_openai_batch",
    "openai_batch_object",
    "openai_batch_view",
    "write_results",
]

MAX_REQUESTS = 50_000  # OpenAI's limit of requests per batch file
COMPLETION_WINDOW_S = 24 * 3600  # "24h", the only window OpenAI offers
RESULTS_HOLD_S = 600  # a writer of result files that died lets another try after this
RESULTS_WAIT_S = 5.0  # a read waits this long for the result files before answering
_WRITERS: set[asyncio.Task[None]] = set()  # result writers running on after their request

log = logging.getLogger("sgflow.service")
_FINAL = ("completed", "failed", "expired", "cancelled")
_KEYS = {"input_file_id", "endpoint", "completion_window", "metadata"}


def _parser(endpoint: str) -> Any:
    return parse_chat_request if endpoint == "/v1/chat/completions" else parse_responses_request


def _limits(settings: Settings) -> BatchLimits:
    return BatchLimits(max_requests=MAX_REQUESTS, max_bytes=settings.max_file_bytes)


def _check_body(data: dict[str, Any]) -> tuple[str, str, dict[str, str] | None]:
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ApiError(
            422, "request.invalid", f"unknown field `{unknown[0]}`", field=f"/{unknown[0]}"
        )
    file_id, endpoint = data.get("input_file_id"), data.get("endpoint")
    if not isinstance(file_id, str) or not file_id:
        raise ApiError(
            422, "request.invalid", "`input_file_id` must be a file id", field="/input_file_id"
        )
    if endpoint not in BATCH_ENDPOINTS:
        raise SgflowError(
            "openai.unsupported",
            f"`endpoint` must be one of {', '.join(BATCH_ENDPOINTS)}",
            field="/endpoint",
        )
    if data.get("completion_window", "24h") != "24h":
        raise ApiError(
            422, "request.invalid", '`completion_window` must be "24h"', field="/completion_window"
        )
    metadata = data.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or len(metadata) > 16
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise ApiError(
            422,
            "request.invalid",
            "`metadata` must be at most 16 string keys and values",
            field="/metadata",
        )
    return file_id, str(endpoint), metadata


async def create_openai_batch(
    data: dict[str, Any],
    *,
    tenant: Tenant,
    submitter: RunSubmitter,
    batches: AsyncBatchStore,
    files: AsyncFileStore,
    programs: AsyncProgramStore,
    settings: Settings,
) -> BatchRecord:
    """Check, plan and store an OpenAI batch; its lines are queued as sgflow's batch lines
    are. Raises (in OpenAI's shape on this path): 404 ``file.not_found``, 400
    ``batch.invalid_line`` naming the line, 413 ``limit.batch_size`` / ``limit.file_size``,
    400 ``request.invalid`` for the body."""
    file_id, endpoint, metadata = _check_body(data)
    content = await files.content(tenant.name, file_id) if len(file_id) <= 64 else None
    if content is None:
        raise ApiError(404, "file.not_found", f"there is no file {file_id}", field="/input_file_id")
    requests: list[BatchRequest] = await run_cpu(
        partial(
            parse_batch_file,
            content.encode("utf-8"),
            endpoint=endpoint,
            parse_body=_parser(endpoint),
            limits=_limits(settings),
        )
    )
    planned: list[tuple[str, str, dict[str, Any]]] = []
    own: list[tuple[str, str]] = []
    stored: set[str] = set()
    for request in requests:
        try:
            plan = await plan_request(request.body, tenant, programs)
            program, label = await submitter.resolve_program(tenant, plan.program)
            phash, dumped = await run_cpu(_checked, program, plan.inputs)
        except SgflowError as err:
            raise SgflowError(
                "batch.invalid_line",
                f"line {request.line} ({request.custom_id!r}): {err.message}",
                field=f"/lines/{request.line}",
                extra={"openai_code": "invalid_body", "sgflow_line_code": err.code},
            ) from None
        if phash not in stored:
            await submitter.bodies.put(phash, dumped)
            stored.add(phash)
        planned.append((request.custom_id, uuid.uuid4().hex, plan.inputs))
        own.append((label, phash))

    async def keep_facts(record: BatchRecord) -> None:
        await files.put_batch_facts(
            record.id,
            endpoint=endpoint,
            input_file_id=file_id,
            completion_window="24h",
            metadata=metadata,
            content=content,
        )

    return await open_batch(
        submitter,
        batches,
        tenant,
        program=own[0],
        lines=planned,
        programs=own,
        deadline_at=time.time() + COMPLETION_WINDOW_S,
        before_lines=keep_facts,
    )


async def openai_batch_view(
    record: BatchRecord,
    progress: BatchProgress,
    facts: OpenAIBatchFacts,
    *,
    tenant: Tenant,
    batches: AsyncBatchStore,
    files: AsyncFileStore,
    runs: AsyncRunStore,
    programs: AsyncProgramStore,
    settings: Settings,
) -> dict[str, Any]:
    """OpenAI's ``Batch`` for ``record``; a batch whose lines are all final gets its result
    files written first (once), and shows ``finalizing`` while someone else writes them."""
    view = batch_view(record, progress)
    if view["status"] in _FINAL and not facts.results_written:
        if await files.take_results(record.id, hold_s=RESULTS_HOLD_S):
            task = asyncio.create_task(
                _write_and_release(
                    record,
                    facts,
                    tenant=tenant,
                    batches=batches,
                    files=files,
                    runs=runs,
                    programs=programs,
                    settings=settings,
                )
            )
            _WRITERS.add(task)
            task.add_done_callback(_WRITERS.discard)
            # a small batch's files are answered at once; a large one's are written on
            # after this answer (``finalizing`` until then)
            await asyncio.wait([task], timeout=RESULTS_WAIT_S)
        facts = await files.batch_facts(record.id) or facts
    return openai_batch_object(view, facts)


def openai_batch_object(view: dict[str, Any], facts: OpenAIBatchFacts) -> dict[str, Any]:
    """OpenAI's ``Batch`` from sgflow's view of the batch and its OpenAI facts, as they are
    (``finalizing`` while the result files are not written; listing writes none)."""
    if view["status"] in _FINAL and not facts.results_written:
        view = {**view, "status": "finalizing"}
    return batch_object(
        view,
        endpoint=facts.endpoint,
        input_file_id=facts.input_file_id,
        completion_window=facts.completion_window,
        output_file_id=facts.output_file_id,
        error_file_id=facts.error_file_id,
        metadata=facts.metadata,
    )


async def _write_and_release(
    record: BatchRecord, facts: OpenAIBatchFacts, *, files: AsyncFileStore, **kw: Any
) -> None:
    try:
        await write_results(record, facts, files=files, **kw)
    except Exception:
        log.exception("writing an OpenAI batch's result files failed", extra={"batch": record.id})
    finally:
        await files.release_results(record.id)


async def _answer(
    request: BatchRequest,
    run_id: str,
    *,
    tenant: Tenant,
    runs: AsyncRunStore,
    programs: AsyncProgramStore,
) -> tuple[int, dict[str, Any]]:
    """A succeeded line's answer as the direct route gives it: ``(200, body)``, or the
    error (status, OpenAI's error body) if it cannot be built."""
    try:
        plan = await plan_request(request.body, tenant, programs)
        run = await runs.get(run_id)
        if run is None:
            raise SgflowError("run.not_found", f"the run {run_id} of this line expired")
        fold = RunFold(plan)
        after = "0-0"
        while True:
            page = await runs.read_events(run_id, after, count=500)
            for event_id, kind, data in page:
                fold.feed(kind, data)
                after = event_id
            if len(page) < 500:
                break
        record = RunRecord.from_view(run_view(run))
        build = chat_completion if plan.endpoint == "chat" else response_object
        body = await run_cpu(build, plan, record, fold)
        return 200, body
    except SgflowError as err:
        answer = openai_error(err)
        return answer.status, answer.body


def _error_answer(error: str | None) -> tuple[int, dict[str, Any]]:
    raw = json.loads(error) if error else {}
    try:
        err = SgflowError(str(raw.get("code")), str(raw.get("message") or "the run failed"))
    except KeyError:
        err = SgflowError("run.failed", str(raw.get("message") or "the run failed"))
    answer = openai_error(err)
    return answer.status, answer.body


async def write_results(
    record: BatchRecord,
    facts: OpenAIBatchFacts,
    *,
    tenant: Tenant,
    batches: AsyncBatchStore,
    files: AsyncFileStore,
    runs: AsyncRunStore,
    programs: AsyncProgramStore,
    settings: Settings,
) -> None:
    """Write the output file (a line per succeeded request) and the error file (the rest),
    each only when it has lines, and record them on the batch."""
    content = await files.batch_input(record.id) or ""
    requests: dict[str, BatchRequest] = {}
    if content:
        parsed = await run_cpu(
            partial(
                parse_batch_file,
                content.encode("utf-8"),
                endpoint=facts.endpoint,
                parse_body=_parser(facts.endpoint),
                limits=_limits(settings),
            )
        )
        requests = {r.custom_id: r for r in parsed}
    out: list[str] = []
    errors: list[str] = []
    async for page in batches.pages(record.id):
        for cid, run_id, mark, _output, error in await batches.result_page(record.id, page):
            line: dict[str, Any]
            if mark == "succeeded" and cid in requests:
                status, body = await _answer(
                    requests[cid], run_id, tenant=tenant, runs=runs, programs=programs
                )
                line = batch_output_line(cid, run_id, status_code=status, body=body)
                (out if status == 200 else errors).append(json.dumps(line, ensure_ascii=False))
                continue
            if mark == "cancelled":
                line = batch_error_line(
                    cid, run_id, code="batch_cancelled", message="the batch was cancelled"
                )
            elif mark == "expired":
                line = batch_error_line(
                    cid,
                    run_id,
                    code="batch_expired",
                    message="the batch's completion window ended before this request ran",
                )
            else:
                status, body = _error_answer(error)
                line = batch_output_line(cid, run_id, status_code=status, body=body)
            errors.append(json.dumps(line, ensure_ascii=False))
    now = time.time()
    ids: dict[str, str | None] = {"output": None, "error": None}
    for kind, lines in (("output", out), ("error", errors)):
        if not lines:
            continue
        text = "\n".join(lines) + "\n"
        stored = StoredFile(
            id="file-" + uuid.uuid4().hex,
            filename=f"{record.id}_{kind}.jsonl",
            purpose="batch_output",
            size=len(text.encode("utf-8")),
            created_at=now,
        )
        await files.put(tenant.name, stored, text, ttl_s=settings.result_ttl_s)
        ids[kind] = stored.id
    await files.set_results(
        record.id,
        output_file_id=ids["output"],
        error_file_id=ids["error"],
        now=now,
        ttl_s=settings.result_ttl_s,
    )
