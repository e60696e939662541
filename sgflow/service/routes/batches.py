"""``/v1/batches``: submit many inputs of one program, follow, read results, cancel, list.

Semantics of OpenAI's Batch API; see :mod:`sgflow.service.batches` for the statuses and
how lines are counted.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from sgflow.jsonbounds import JsonBoundsError, loads
from sgflow.service.auth import Tenant
from sgflow.service.batches import (
    BatchRecord,
    batch_view,
    cancel_batch,
    result_rows,
    submit_batch,
)
from sgflow.service.deps import (
    JsonBody,
    ProgramStoreDep,
    SettingsDep,
    TenantDep,
    read_json_body,
)
from sgflow.service.errors import ApiError, json_refused, malformed_json
from sgflow.service.middleware import NDJSON_TYPES
from sgflow.service.models import cursor_page
from sgflow.service.offload import run_cpu
from sgflow.service.openai_batches import (
    create_openai_batch,
    openai_batch_object,
    openai_batch_view,
)
from sgflow.service.routes.files import FileStoreDep
from sgflow.service.routes.runs import RunStoreDep, SubmitterDep
from sgflow.settings import Settings
from sgflow.store import AsyncBatchStore, AsyncFileStore, AsyncProgramStore, AsyncRunStore

__all__ = ["router"]

router = APIRouter(prefix="/batches", tags=["batches"])

_LINE_SCHEMA = {
    "type": "object",
    "required": ["custom_id", "inputs"],
    "properties": {"custom_id": {"type": "string", "minLength": 1}, "inputs": {"type": "object"}},
}
_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["program", "inputs"],
                    "properties": {
                        "program": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                        "inputs": {"type": "array", "items": _LINE_SCHEMA},
                        "deadline_s": {"type": "number", "exclusiveMinimum": 0},
                    },
                }
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


async def get_batch_store(store: RunStoreDep) -> AsyncBatchStore:
    return AsyncBatchStore(store)


BatchStoreDep = Annotated[AsyncBatchStore, Depends(get_batch_store)]


async def get_owned_batch(batch_id: str, tenant: TenantDep, batches: BatchStoreDep) -> BatchRecord:
    """The caller's batch; another tenant's batch, or none, is a 404 ``batch.not_found``."""
    record = await batches.get(batch_id, tenant=tenant.name) if len(batch_id) <= 64 else None
    if record is None:
        raise ApiError(
            404,
            "batch.not_found",
            f"there is no batch {batch_id}",
            hint="GET /v1/batches lists yours",
        )
    return record


OwnedBatch = Annotated[BatchRecord, Depends(get_owned_batch)]


async def read_batch_body(request: Request) -> JsonBody:
    """A JSON object, or for a JSONL upload (``Content-Type: application/x-ndjson``) the
    object ``{"program", "inputs": [lines], "deadline_s"}`` built from the query parameters
    and the lines, each bounded by :mod:`sgflow.jsonbounds`. Raises 400
    ``request.malformed_json`` (or the loader's ``json.*`` / ``limit.json_*`` code) naming
    the bad line, with ``field`` ``/inputs/<index>`` and the pointer inside the line."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in NDJSON_TYPES:
        return await read_json_body(request)
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise malformed_json(f"not UTF-8 (byte {exc.start})") from None
    lines = await run_cpu(_parse_jsonl, text, request.app.state.settings.max_json_depth)
    data: dict[str, Any] = {"program": request.query_params.get("program"), "inputs": lines}
    deadline = request.query_params.get("deadline_s")
    if deadline is not None:
        try:
            data["deadline_s"] = float(deadline)
        except ValueError:
            raise ApiError(
                422, "request.invalid", "`deadline_s` must be a number", field="query:deadline_s"
            ) from None
    if data["program"] is None:
        raise ApiError(
            422,
            "request.invalid",
            "a JSONL upload names its program in the `program` query parameter",
            field="query:program",
            hint="POST /v1/batches?program=name@version",
        )
    return JsonBody(data=data, text=text)


def _parse_jsonl(text: str, max_depth: int) -> list[Any]:
    """The lines of a JSONL upload, each read by the bounded loader (a refused line is
    named by its number and its pointer, ``/inputs/N``)."""
    lines: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            lines.append(loads(line, max_depth=max_depth, max_size=None))
        except JsonBoundsError as exc:
            raise json_refused(
                exc, field=f"/inputs/{len(lines)}", where=f"line {number}: "
            ) from None
    return lines


BatchBodyDep = Annotated[JsonBody, Depends(read_batch_body)]


@router.post("", status_code=202, summary="Submit a batch", openapi_extra=_OPENAPI_BODY)
async def create_batch(
    request: Request,
    body: BatchBodyDep,
    tenant: TenantDep,
    submitter: SubmitterDep,
    batches: BatchStoreDep,
    settings: SettingsDep,
    files: FileStoreDep,
    programs: ProgramStoreDep,
    store: RunStoreDep,
) -> JSONResponse:
    """JSON ``{"program": "name@version" | {inline}, "inputs": [{"custom_id", "inputs"}],
    "deadline_s": optional}``, or JSONL lines ``{"custom_id", "inputs"}`` with
    ``?program=name@version``. Every line is validated before any run is created (422 with
    the line's pointer, e.g. ``/inputs/3/custom_id``); 413 ``limit.batch_size`` past
    ``max_batch_size`` lines, 413 ``limit.request_size`` past ``max_batch_bytes``. Answers
    202 with the batch, ``in_progress``: every line's run exists; the workers warm the
    program's shared prefix, then start the lines."""
    data = body.data
    if not isinstance(data, dict):
        raise ApiError(422, "request.invalid", "the body must be a JSON object", field="")
    if "input_file_id" in data:  # OpenAI's shape: a JSONL file of chat/responses requests
        request.state.openai_errors = True
        created = await create_openai_batch(
            data,
            tenant=tenant,
            submitter=submitter,
            batches=batches,
            files=files,
            programs=programs,
            settings=settings,
        )
        answer = await _openai_view(
            created, tenant, batches, files, store, programs, settings, request=request
        )
        assert answer is not None
        return JSONResponse(answer, headers={"Location": f"/v1/batches/{created.id}"})
    unknown = sorted(set(data) - {"program", "inputs", "deadline_s"})
    if unknown:
        raise ApiError(
            422, "request.invalid", f"unknown field `{unknown[0]}`", field=f"/{unknown[0]}"
        )
    record = await submit_batch(
        submitter,
        batches,
        tenant,
        program=data.get("program"),
        items=data.get("inputs"),
        deadline_s=data.get("deadline_s"),
        max_lines=settings.max_batch_size,
    )
    view = batch_view(record, await batches.progress(record.id))
    return JSONResponse(view, status_code=202, headers={"Location": f"/v1/batches/{record.id}"})


async def _openai_view(
    record: BatchRecord,
    tenant: Tenant,
    batches: AsyncBatchStore,
    files: AsyncFileStore,
    runs: AsyncRunStore,
    programs: AsyncProgramStore,
    settings: Settings,
    *,
    request: Request,
) -> dict[str, Any] | None:
    """OpenAI's ``Batch`` when ``record`` is an OpenAI batch (its errors then in OpenAI's
    shape), else None."""
    facts = await files.batch_facts(record.id)
    if facts is None:
        return None
    request.state.openai_errors = True
    fresh, progress = await batches.refresh(record)
    return await openai_batch_view(
        fresh,
        progress,
        facts,
        tenant=tenant,
        batches=batches,
        files=files,
        runs=runs,
        programs=programs,
        settings=settings,
    )


@router.get("/{batch_id}", summary="A batch: status and request counts")
async def get_batch(
    request: Request,
    record: OwnedBatch,
    tenant: TenantDep,
    batches: BatchStoreDep,
    files: FileStoreDep,
    store: RunStoreDep,
    programs: ProgramStoreDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """sgflow's batch view; for a batch created from an ``input_file_id``, OpenAI's
    ``Batch`` (with ``output_file_id`` / ``error_file_id`` once every line is final)."""
    answer = await _openai_view(
        record, tenant, batches, files, store, programs, settings, request=request
    )
    if answer is not None:
        return answer
    return batch_view(*await batches.refresh(record))


@router.get("/{batch_id}/results", summary="A batch's results (JSONL, in input order)")
async def batch_results(record: OwnedBatch, batches: BatchStoreDep) -> StreamingResponse:
    """One line per input, in input order: ``{"custom_id", "run_id", "status"}`` and
    ``output`` or ``error: {code, message}``; lines not final are ``in_progress``, lines cut
    off by the deadline ``expired``. Available while the batch runs."""
    await batches.refresh(record)
    return StreamingResponse(result_rows(batches, record.id), media_type="application/x-ndjson")


@router.post("/{batch_id}/cancel", status_code=202, summary="Cancel a batch")
async def cancel(
    request: Request,
    record: OwnedBatch,
    tenant: TenantDep,
    batches: BatchStoreDep,
    files: FileStoreDep,
    store: RunStoreDep,
    programs: ProgramStoreDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Cancels the lines not final yet; finished lines keep their results. The batch is
    ``cancelling`` until every line is final, then ``cancelled``."""
    await cancel_batch(batches, record)
    fresh = await batches.get(record.id) or record
    answer = await _openai_view(
        fresh, tenant, batches, files, store, programs, settings, request=request
    )
    if answer is not None:
        return answer
    return batch_view(fresh, await batches.progress(record.id))


@router.get("", summary="The caller's batches, newest first")
async def list_batches(
    tenant: TenantDep,
    batches: BatchStoreDep,
    files: FileStoreDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Each batch in the shape it was made in: OpenAI's ``Batch`` for one made from an
    ``input_file_id`` (as ``client.batches.list()`` reads it), sgflow's view for the others;
    ``first_id``/``last_id`` for OpenAI's paginator."""
    listed = await batches.list_batches(tenant.name, limit=limit, after=after)
    if listed is None:
        raise ApiError(422, "request.invalid", f"there is no batch {after}", field="query:after")
    records, has_more = listed
    data = []
    for record in records:
        view = batch_view(*await batches.refresh(record))
        facts = await files.batch_facts(record.id)
        data.append(view if facts is None else openai_batch_object(view, facts))
    return cursor_page(data, has_more=has_more)
