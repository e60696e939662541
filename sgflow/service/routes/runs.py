"""``/v1/runs``: submit, read, follow (Server-Sent Events), cancel and list runs.

Following a run never holds a thread or a Redis connection: the stream reads the run's
history, then waits on this process's :class:`~sgflow.service.events.EventHub` (one blocking
``XREAD`` for every open stream), and sse-starlette sends keep-alive pings and notices when
the client goes away.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from sgflow.service.deps import JsonBodyDep, TenantDep
from sgflow.service.errors import ApiError
from sgflow.service.events import EventHub
from sgflow.service.runs import MAX_DEADLINE_S, RunSubmitter, run_view
from sgflow.store import AsyncRunStore, InvalidCursor, Run, check_event_id

__all__ = ["router"]

router = APIRouter(prefix="/runs", tags=["runs"])

_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
PING_S = 15  # a keep-alive comment this often while a stream is quiet
_IDLE_CHECK_S = 30  # a quiet stream checks this often that its run is not over
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


async def get_run_store(request: Request) -> AsyncRunStore:
    store: AsyncRunStore = request.app.state.runs
    return store


async def get_submitter(request: Request) -> RunSubmitter:
    submitter: RunSubmitter = request.app.state.submitter
    return submitter


async def get_hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.hub
    return hub


RunStoreDep = Annotated[AsyncRunStore, Depends(get_run_store)]
SubmitterDep = Annotated[RunSubmitter, Depends(get_submitter)]
HubDep = Annotated[EventHub, Depends(get_hub)]


async def get_owned_run(run_id: str, tenant: TenantDep, store: RunStoreDep) -> Run:
    """The caller's run; another tenant's run, or none, is a 404 ``run.not_found``."""
    run = await store.get(run_id, tenant=tenant.name) if len(run_id) <= 64 else None
    if run is None:
        raise ApiError(
            404, "run.not_found", f"there is no run {run_id}", hint="GET /v1/runs lists yours"
        )
    return run


OwnedRun = Annotated[Run, Depends(get_owned_run)]


@router.post("", status_code=202, summary="Submit a run", openapi_extra=_OPENAPI_BODY)
async def submit_run(
    body: JsonBodyDep,
    tenant: TenantDep,
    submitter: SubmitterDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Body: ``{"program": "name@version" | {inline program}, "inputs": {...}, "priority": 0,
    "deadline_s": optional}``; the run's ``deadline_at`` is submission time + ``deadline_s``.
    Answers 202 with the run (``status_url``, ``events_url``) at once; with an
    ``Idempotency-Key`` already used for the same body, 200 with that run. 429
    ``limit.concurrent_runs`` (with ``Retry-After``) past the tenant's queued and running
    runs."""
    submitted = await submitter.submit(tenant, body.data, idempotency_key=idempotency_key)
    view = run_view(submitted.run)
    return JSONResponse(
        view,
        status_code=202 if submitted.created else 200,
        headers={"Location": view["status_url"]},
    )


@router.get("/{run_id}", summary="A run: status, outputs, per-step trace, error")
async def get_run(run: OwnedRun) -> dict[str, Any]:
    return run_view(run)


@router.post("/{run_id}/cancel", status_code=202, summary="Cancel a run")
async def cancel_run(run: OwnedRun, store: RunStoreDep) -> dict[str, Any]:
    """Queued runs are cancelled at once; running ones before their next step, or within
    about a second while a step is generating (the generation is stopped). A finished run
    is left as it is (the answer says so)."""
    outcome = await store.request_cancel(run.id)
    fresh = await store.get(run.id)
    return {"id": run.id, "cancel": outcome, "status": fresh.status if fresh else run.status}


@router.get("/{run_id}/events", summary="Follow a run (Server-Sent Events)")
async def run_events(
    run: OwnedRun,
    store: RunStoreDep,
    hub: HubDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """``run.queued``, ``run.started``, ``step.started``, ``step.delta`` (text generated
    since the previous delta: ``{"step", "branch", "attempt", "text"}``, a few per second),
    ``step.invalid``, ``step.finished``, ``run.cancel_requested``, ``run.retrying``,
    ``run.requeued``, ``run.resumed``, ``run.finished``; each with an ``id``: reconnect with
    ``Last-Event-ID`` to miss nothing. The stream ends after ``run.finished``; a keep-alive
    comment comes every 15 s. A client that reads too slowly to keep up (1,000 events
    behind) has its stream ended and reconnects with ``Last-Event-ID``."""
    after = last_event_id or "0-0"
    try:
        check_event_id(after)
    except ValueError:
        raise ApiError(
            422,
            "request.invalid",
            f"Last-Event-ID {after[:40]!r} is not an event id",
            field="header:Last-Event-ID",
        ) from None
    stream = (
        _finished_stream(store, run.id, after, run.trace_id)
        if run.finished
        else _live_stream(store, hub, run.id, after, run.trace_id)
    )
    return EventSourceResponse(
        stream,
        ping=PING_S,
        headers={"Cache-Control": "no-cache"},
        ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"),
    )


def _sse(event: tuple[str, str, dict[str, Any]], trace_id: str | None) -> ServerSentEvent:
    """One event as SSE; its data carries the run's ``trace_id``."""
    event_id, kind, data = event
    if trace_id is not None:
        data = {**data, "trace_id": trace_id}
    return ServerSentEvent(data=json.dumps(data), event=kind, id=event_id)


async def _finished_stream(
    store: AsyncRunStore, run_id: str, after: str, trace_id: str | None
) -> AsyncIterator[ServerSentEvent]:
    """A finished run's events after ``after``: its history, read a page at a time."""
    while events := await store.read_events(run_id, after, count=500):
        for event in events:
            yield _sse(event, trace_id)
        after = events[-1][0]


async def _live_stream(
    store: AsyncRunStore, hub: EventHub, run_id: str, after: str, trace_id: str | None
) -> AsyncIterator[ServerSentEvent]:
    """History, then live events through the hub, until ``run.finished`` (or until the
    hub drops a subscriber that fell too far behind)."""
    async with hub.subscribe(run_id, after) as sub:
        while True:
            event = await sub.next(_IDLE_CHECK_S)
            if event is None:
                if sub.dropped:
                    return
                # quiet for a while: a run that ended (and whose end this stream already
                # sent, or that expired) has nothing more to say
                current = await store.get(run_id)
                over = current is None or current.finished
                if over and not await store.read_events(run_id, sub.last_id, count=1):
                    return
                continue
            yield _sse(event, trace_id)
            if event[1] == "run.finished":
                return


@router.get("", summary="List runs (newest first, cursor pagination)")
async def list_runs(
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
        runs, next_cursor = await store.list_runs(
            tenant.name, status=status, program=program, cursor=cursor, limit=limit
        )
    except InvalidCursor:
        raise ApiError(
            422, "request.invalid", "the cursor is not one this API returned", field="cursor"
        ) from None
    return {"object": "list", "data": [run_view(r) for r in runs], "next_cursor": next_cursor}
