"""The OpenAI-compatible routes: ``POST /v1/chat/completions``, ``POST /v1/responses``,
``GET /v1/models`` and ``GET /v1/models/{model}``, so the ``openai`` SDK works unchanged
(``base_url=<api>/v1``, ``api_key=<sgflow key>``).

Every request is a durable queued run, exactly as ``POST /v1/extract`` is: the body is
parsed and planned by :mod:`sgflow.openai` (an inline program and its inputs, or a stored
program for a ``program:NAME@V`` model), submitted through the same
:class:`~sgflow.service.runs.RunSubmitter` as ``POST /v1/runs`` (same tenant, checks and
concurrency cap), and answered from the run's record and events. The request follows the
run on this process's event hub (no thread waits); a streamed answer (``stream: true``)
turns the events into chunks as they arrive: ``data: {chunk}`` lines ending with
``data: [DONE]`` (chat) or Responses' typed events, with a keep-alive comment every
:data:`PING_S` seconds of quiet. A client that closes a stream before its end cancels the
run.

Each run gets a deadline of :data:`ANSWER_DEADLINE_S` (the SDK's default timeout): a run
still queued or running then fails with ``run.deadline_exceeded``. The run id is in every
answer: ``x-request-id`` (the SDK's ``_request_id``), ``run_id``, and the object ids
(``chatcmpl-<run>``, ``resp_<run>``); ``GET /v1/runs/{id}`` shows its trace.

Errors on these paths are in OpenAI's shape with sgflow's code inside
(:func:`sgflow.service.errors.error_response`); a status 422 is answered 400, as OpenAI
answers invalid requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import anyio
import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sgflow.adapters.detect import base_url
from sgflow.errors import SgflowError
from sgflow.openai import (
    ChatRequest,
    ChatStream,
    Plan,
    ResponsesRequest,
    ResponsesStream,
    RunFold,
    RunRecord,
    answer_headers,
    chat_completion,
    model_list,
    parse_chat_request,
    parse_model_name,
    parse_responses_request,
    plan_chat,
    plan_program_model,
    plan_responses,
    response_object,
)
from sgflow.openai.model_list import model_object
from sgflow.service.auth import Tenant
from sgflow.service.compile_check import VocabularyCheck
from sgflow.service.deps import JsonBodyDep, ProgramStoreDep, TenantDep, resolve_program_ref
from sgflow.service.events import EventHub
from sgflow.service.offload import run_cpu
from sgflow.service.routes.runs import HubDep, RunStoreDep, SubmitterDep
from sgflow.service.runs import RunSubmitter, cancel_submitted, run_view
from sgflow.settings import Settings
from sgflow.store import AsyncProgramStore, AsyncRunStore, Run

__all__ = ["ANSWER_DEADLINE_S", "PING_S", "follow_run", "plan_request", "router"]

router = APIRouter(tags=["openai"])

ANSWER_DEADLINE_S = 600.0  # a run answering a request fails past this (the SDK's timeout)
PING_S = 15.0  # a keep-alive comment this often while a stream is quiet
MODELS_TTL_S = 30.0  # the engines' model lists are asked again after this
MAX_PROGRAM_MODELS = 2000  # program versions listed by GET /v1/models
_ENGINE_TIMEOUT_S = 2.0
_KEEP_ALIVE = ": keep-alive\n\n"

Event = tuple[str, dict[str, Any]]


# -- following a run ----------------------------------------------------------------------------


async def follow_run(
    store: AsyncRunStore, hub: EventHub, run_id: str, *, idle_s: float = PING_S
) -> AsyncIterator[Event | None]:
    """The run's events ``(kind, data)`` from its first, in order, until ``run.finished``
    (included); ``None`` after each ``idle_s`` seconds without one (a stream's keep-alive).
    A subscription the hub dropped (too far behind) is taken up again where it stopped; a
    run that is over without a ``run.finished`` left to read (expired) ends the iteration."""
    after = "0-0"
    while True:
        async with hub.subscribe(run_id, after) as sub:
            while True:
                event = await sub.next(idle_s)
                if event is None:
                    if sub.dropped:
                        break
                    current = await store.get(run_id)
                    over = current is None or current.finished
                    if over and not await store.read_events(run_id, sub.last_id, count=1):
                        return
                    yield None
                    continue
                yield event[1], event[2]
                if event[1] == "run.finished":
                    return
            after = sub.last_id


async def _record(store: AsyncRunStore, run: Run) -> RunRecord:
    fresh = await store.get(run.id)
    return RunRecord.from_view(run_view(fresh or run))


# -- planning -----------------------------------------------------------------------------------


async def plan_request(
    req: ChatRequest | ResponsesRequest, tenant: Tenant, programs: AsyncProgramStore
) -> Plan:
    """The plan for ``req``: a model ``program:NAME@V`` runs that stored program (pinned to
    the version resolved now), any other model name the engines' model."""
    model = parse_model_name(req.model)
    if model is None:
        if isinstance(req, ChatRequest):
            return await run_cpu(plan_chat, req)
        return await run_cpu(plan_responses, req)
    try:
        stored = await resolve_program_ref(programs, tenant, model.ref, field="/model")
    except SgflowError as err:
        if err.code != "program.not_found":
            raise
        raise SgflowError(
            "model.not_found",
            f"there is no model {req.model!r}: no program {model.ref}",
            field="/model",
            hint="GET /v1/models lists the models and programs you can call",
        ) from None
    inputs_schema = stored.program.get("inputs") or {"type": "object"}
    plan = await run_cpu(partial(plan_program_model, req, model, inputs_schema=inputs_schema))
    return dataclasses.replace(plan, program=stored.ref)


async def _answer(
    plan: Plan,
    *,
    tenant: Tenant,
    submitter: RunSubmitter,
    store: AsyncRunStore,
    hub: EventHub,
    vocabulary_check: VocabularyCheck,
) -> Response:
    # the schemas compile against the vocabulary beside the run, as /v1/extract's do
    submitted = await vocabulary_check.beside(
        plan.compiled_schemas(),
        lambda: submitter.submit(tenant, {**plan.run_body(), "deadline_s": ANSWER_DEADLINE_S}),
        partial(cancel_submitted, store),
    )
    run = submitted.run
    headers = answer_headers(plan, run.id)
    if plan.stream:
        return StreamingResponse(
            _stream(plan, run, store, hub),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    fold = RunFold(plan)
    async for event in follow_run(store, hub, run.id):
        if event is not None:
            fold.feed(*event)
    record = await _record(store, run)
    build = chat_completion if plan.endpoint == "chat" else response_object
    try:
        body = await run_cpu(build, plan, record, fold)
    except SgflowError as err:
        err.headers.setdefault("x-request-id", run.id)
        raise
    return JSONResponse(body, headers=headers)


async def _stream(plan: Plan, run: Run, store: AsyncRunStore, hub: EventHub) -> AsyncIterator[str]:
    """The SSE text of a streamed answer; cancels the run if it stops before the end."""
    builder: ChatStream | ResponsesStream
    if plan.endpoint == "chat":
        builder = ChatStream(plan, run_id=run.id, created=run.created_at)
    else:
        builder = ResponsesStream(plan, run_id=run.id, created=run.created_at)
    done = False
    try:
        yield builder.start()
        async for event in follow_run(store, hub, run.id):
            if event is None:
                yield _KEEP_ALIVE
                continue
            text = builder.feed(*event)
            if text:
                yield text
            if builder.closed:  # restarted after part of the answer was sent
                return
        yield builder.finish(await _record(store, run))
        done = True
    except SgflowError as err:  # the store failed while following: say so in the stream
        yield builder.error(err)
    finally:
        if not done:
            with anyio.CancelScope(shield=True):
                await store.request_cancel(run.id)


# -- the routes ---------------------------------------------------------------------------------


async def _openai_call(
    parse: Callable[[Any], ChatRequest | ResponsesRequest],
    request: Request,
    body: JsonBodyDep,
    tenant: Tenant,
    programs: AsyncProgramStore,
    submitter: RunSubmitter,
    store: AsyncRunStore,
    hub: EventHub,
) -> Response:
    req = await run_cpu(parse, body.data)
    plan = await plan_request(req, tenant, programs)
    return await _answer(
        plan,
        tenant=tenant,
        submitter=submitter,
        store=store,
        hub=hub,
        vocabulary_check=request.app.state.vocabulary_check,
    )


@router.post("/chat/completions", summary="OpenAI chat completions (a queued run)")
async def chat_completions(
    request: Request,
    tenant: TenantDep,  # first: an unauthenticated caller gets 401 whatever the body
    body: JsonBodyDep,
    programs: ProgramStoreDep,
    submitter: SubmitterDep,
    store: RunStoreDep,
    hub: HubDep,
) -> Response:
    """OpenAI's ``POST /v1/chat/completions``: a ``ChatCompletion``, or with ``stream:
    true`` ``chat.completion.chunk`` events ending with ``data: [DONE]``
    (``stream_options.include_usage`` adds the usage chunk). ``response_format`` and strict
    tools are generated under their schema. 400 in OpenAI's error shape for what cannot be
    honoured, naming the ``param``; ``model: program:NAME@V`` runs a stored program."""
    return await _openai_call(
        parse_chat_request, request, body, tenant, programs, submitter, store, hub
    )


@router.post("/responses", summary="OpenAI Responses (a queued run)")
async def responses(
    request: Request,
    tenant: TenantDep,  # first: an unauthenticated caller gets 401 whatever the body
    body: JsonBodyDep,
    programs: ProgramStoreDep,
    submitter: SubmitterDep,
    store: RunStoreDep,
    hub: HubDep,
) -> Response:
    """OpenAI's ``POST /v1/responses``: a ``Response`` object, or with ``stream: true`` its
    typed events (``response.created`` … ``response.completed``). ``text.format``
    ``json_schema`` answers are generated under the schema (``responses.parse`` works)."""
    return await _openai_call(
        parse_responses_request, request, body, tenant, programs, submitter, store, hub
    )


async def _engine_models(request: Request) -> list[tuple[str, float]]:
    """The engines' models (``GET {engine}/v1/models``), asked at most every
    :data:`MODELS_TTL_S` seconds; an engine that does not answer is left out."""
    cached: tuple[float, list[tuple[str, float]]] | None = getattr(
        request.app.state, "openai_engine_models", None
    )
    now = time.monotonic()
    if cached is not None and now - cached[0] < MODELS_TTL_S:
        return cached[1]
    settings: Settings = request.app.state.settings

    async def ask(client: httpx.AsyncClient, url: str) -> list[str]:
        try:
            r = await client.get(f"{base_url(url)}/v1/models")
            r.raise_for_status()
            return [str(m["id"]) for m in r.json().get("data") or [] if m.get("id")]
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            return []

    async with httpx.AsyncClient(timeout=_ENGINE_TIMEOUT_S) as client:
        found = await asyncio.gather(*(ask(client, u) for u in settings.engine_urls))
    created = time.time()
    models = [(m, created) for m in dict.fromkeys(m for ids in found for m in ids)]
    if models:  # a failed look-up is asked again next time
        request.app.state.openai_engine_models = (now, models)
    return models


async def _program_models(
    programs: AsyncProgramStore, tenant: Tenant
) -> list[tuple[str, int, float]]:
    """Every live version of every program of ``tenant`` (at most :data:`MAX_PROGRAM_MODELS`)."""
    out: list[tuple[str, int, float]] = []
    after: str | None = None
    while len(out) < MAX_PROGRAM_MODELS:
        page, after = await programs.list_latest(tenant.name, limit=100, after=after)
        for info in page:
            versions = await programs.versions(tenant.name, info.name)
            out += [(v.name, v.version, v.created_at) for v in versions if not v.deleted]
        if after is None:
            break
    return out[:MAX_PROGRAM_MODELS]


@router.get("/models", summary="OpenAI models: the engines' models and your programs")
async def list_models(
    request: Request, tenant: TenantDep, programs: ProgramStoreDep
) -> dict[str, Any]:
    """The engines' models (owned by ``sgflow``) and every live version of the caller's
    stored programs as ``program:NAME@VERSION`` (owned by the tenant)."""
    engines = await _engine_models(request)
    return model_list(engines, await _program_models(programs, tenant), tenant=tenant.name)


@router.get("/models/{model:path}", summary="One OpenAI model")
async def get_model(
    model: str, request: Request, tenant: TenantDep, programs: ProgramStoreDep
) -> dict[str, Any]:
    """An engine model or ``program:NAME@VERSION``; 404 ``model.not_found`` otherwise."""
    program = parse_model_name(model, field="path:model")
    if program is None:
        for name, created in await _engine_models(request):
            if name == model:
                return model_object(name, created=created, owned_by="sgflow")
    else:
        stored = (
            await programs.latest(tenant.name, program.name)
            if program.version is None
            else await programs.get(tenant.name, program.name, program.version)
        )
        if stored is not None and not stored.deleted:
            return model_object(model, created=stored.created_at, owned_by=tenant.name)
    raise SgflowError(
        "model.not_found",
        f"there is no model {model!r}",
        field="path:model",
        hint="GET /v1/models lists the models and programs you can call",
    )
