"""``/v1/runs``: submit, read, follow (Server-Sent Events), cancel and list runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from sgflow.service.deps import JsonBodyDep, TenantDep
from sgflow.service.errors import ApiError
from sgflow.service.runs import MAX_DEADLINE_S, RunSubmitter, run_view
from sgflow.store import InvalidCursor, Run, RunStore

__all__ = ["router"]

router = APIRouter(prefix="/runs", tags=["runs"])

_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
_SSE_BLOCK_MS = 2_000  # below the Redis client socket timeout (redis-py 8 defaults to 5 s)
_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["program"],
                    "properties": {
                        "program": {
                            "description": "`name@version`, `name` (the latest) or an inline "
                            "program object",
                            "oneOf": [{"type": "string"}, {"type": "object"}],
                        },
                        "inputs": {
                            "type": "object",
                            "description": "checked against the program's input schema",
                        },
                        "priority": {"type": "integer", "minimum": 0, "maximum": 9},
                        "deadline_s": {
                            "type": "number",
                            "exclusiveMinimum": 0,
                            "maximum": MAX_DEADLINE_S,
                            "description": "seconds from submission: a run not finished by "
                            "then fails with `run.deadline_exceeded` (queued: without running; "
                            "running: before its next step, or during a streamed step)",
                        },
                    },
                    "additionalProperties": False,
                }
            }
        },
    }
}


def get_run_store(request: Request) -> RunStore:
    store: RunStore = request.app.state.runs
    return store


def get_submitter(request: Request) -> RunSubmitter:
    submitter: RunSubmitter = request.app.state.submitter
    return submitter


RunStoreDep = Annotated[RunStore, Depends(get_run_store)]
SubmitterDep = Annotated[RunSubmitter, Depends(get_submitter)]


def get_owned_run(run_id: str, tenant: TenantDep, store: RunStoreDep) -> Run:
    """The caller's run; another tenant's run, or none, is a 404 ``run.not_found``."""
    run = store.get(run_id, tenant=tenant.name) if len(run_id) <= 64 else None
    if run is None:
        raise ApiError(
            404, "run.not_found", f"there is no run {run_id}", hint="GET /v1/runs lists yours"
        )
    return run


OwnedRun = Annotated[Run, Depends(get_owned_run)]


@router.post("", status_code=202, summary="Submit a run", openapi_extra=_OPENAPI_BODY)
def submit_run(
    body: JsonBodyDep,
    tenant: TenantDep,
    submitter: SubmitterDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Body: ``{"program": "name@version" | {inline program}, "inputs": {...}, "priority": 0,
    "deadline_s": optional}``; the run's ``deadline_at`` is submission time + ``deadline_s``.
    Answers 202 with the run (``status_url``, ``events_url``) at once; with an
    ``Idempotency-Key`` already used for the same body, 200 with that run."""
    submitted = submitter.submit(tenant, body.data, idempotency_key=idempotency_key)
    view = run_view(submitted.run)
    return JSONResponse(
        view,
        status_code=202 if submitted.created else 200,
        headers={"Location": view["status_url"]},
    )


@router.get("/{run_id}", summary="A run: status, outputs, per-step trace, error")
def get_run(run: OwnedRun) -> dict[str, Any]:
    return run_view(run)


@router.post("/{run_id}/cancel", status_code=202, summary="Cancel a run")
def cancel_run(run: OwnedRun, store: RunStoreDep) -> dict[str, Any]:
    """Queued runs are cancelled at once; running ones before their next step, or within
    about a second while a step is generating (the generation is stopped). A finished run
    is left as it is (the answer says so)."""
    outcome = store.request_cancel(run.id)
    fresh = store.get(run.id)
    return {"id": run.id, "cancel": outcome, "status": fresh.status if fresh else run.status}


@router.get("/{run_id}/events", summary="Follow a run (Server-Sent Events)")
def run_events(
    run: OwnedRun,
    store: RunStoreDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """``run.queued``, ``run.started``, ``step.started``, ``step.delta`` (text generated
    since the previous delta: ``{"step", "branch", "attempt", "text"}``, a few per second),
    ``step.invalid``, ``step.finished``, ``run.cancel_requested``, ``run.retrying``,
    ``run.requeued``, ``run.resumed``, ``run.finished``; each with an ``id``: reconnect with
    ``Last-Event-ID`` to miss nothing. The stream ends after ``run.finished``."""
    after = last_event_id or "0-0"
    try:
        store.read_events(run.id, after_id=after, count=1)
    except ValueError:
        raise ApiError(
            422,
            "request.invalid",
            f"Last-Event-ID {after!r} is not an event id",
            field="Last-Event-ID",
        ) from None

    def stream() -> Iterator[str]:
        cursor = after
        while True:
            events = store.read_events(run.id, after_id=cursor, block_ms=_SSE_BLOCK_MS)
            if not events:
                yield ": keep-alive\n\n"
                current = store.get(run.id)
                if current is None or (
                    current.finished and not store.read_events(run.id, after_id=cursor, count=1)
                ):
                    return
                continue
            for event_id, kind, data in events:
                cursor = event_id
                yield f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"
                if kind == "run.finished":
                    return

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("", summary="List runs (newest first, cursor pagination)")
def list_runs(
    tenant: TenantDep,
    store: RunStoreDep,
    status: Annotated[str | None, Query()] = None,
    program: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    if status is not None and status not in _STATUSES:
        raise ApiError(
            422, "request.invalid", f"status must be one of {', '.join(_STATUSES)}", field="status"
        )
    try:
        runs, next_cursor = store.list_runs(
            tenant.name, status=status, program=program, cursor=cursor, limit=limit
        )
    except InvalidCursor:
        raise ApiError(
            422, "request.invalid", "the cursor is not one this API returned", field="cursor"
        ) from None
    return {"object": "list", "data": [run_view(r) for r in runs], "next_cursor": next_cursor}
