"""Submitting runs: resolve the program, check the inputs, store the run, then enqueue it.

The order is what makes "accepted is never lost" hold: the run record and the program body
are in Redis before the 202 answer, and the Celery message is only a hint to start (a lost
message is re-sent by the workers' reaper). An ``Idempotency-Key`` maps, per tenant, to the
run created for it and the hash of the request body: the same key and body answer the same
run, the same key with another body a 409.

Everything here awaits: Redis through :class:`~sgflow.store.AsyncRunStore`, the static
checker and input validation in the CPU pool (:func:`sgflow.service.offload.run_cpu`), the
Celery message in a worker thread; no request holds the event loop.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import anyio.to_thread
from celery import Celery

from sgflow import traces
from sgflow.errors import SgflowError
from sgflow.grammars.validation import validation_errors
from sgflow.programs.checker import check_program
from sgflow.programs.compiler import program_hash
from sgflow.programs.model import Program
from sgflow.service.auth import Tenant
from sgflow.service.deps import resolve_program_ref
from sgflow.service.errors import ApiError
from sgflow.service.offload import run_cpu
from sgflow.store import (
    ActiveRunLimit,
    AsyncProgramBodies,
    AsyncProgramStore,
    AsyncRunStore,
    IdempotencyConflict,
    Run,
    Submitted,
)
from sgflow.workers.celery_app import TASK_RUN, TASK_START, queue_name

__all__ = [
    "MAX_DEADLINE_S",
    "RunSubmitter",
    "Submitted",
    "cancel_submitted",
    "idempotency_conflict",
    "run_view",
    "too_many_runs",
]

MAX_DEADLINE_S = 7 * 24 * 3600  # a run's deadline_s, as a batch's
MAX_IDEMPOTENCY_KEY = 200  # characters of an Idempotency-Key
RETRY_AFTER_S = 5  # what a 429 for the concurrency cap asks a client to wait


class RunSubmitter:
    """Submits runs for the API: ``store``, ``bodies`` and ``programs`` are the async
    stores, ``celery`` the app messages go out with, ``max_active_runs`` the per-tenant cap
    on queued and running runs."""

    def __init__(
        self,
        *,
        store: AsyncRunStore,
        bodies: AsyncProgramBodies,
        programs: AsyncProgramStore,
        celery: Celery,
        max_active_runs: int,
    ) -> None:
        self.store = store
        self.bodies = bodies
        self.programs = programs
        self.celery = celery
        self.max_active_runs = max_active_runs

    async def submit(
        self,
        tenant: Tenant,
        body: Any,
        *,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Create and enqueue a run from a ``POST /v1/runs`` body. Raises :class:`ApiError`:
        422 for a bad body, program or inputs (with JSON pointers), 404/410 for a program
        reference, 409 for a reused idempotency key, 429 ``limit.concurrent_runs`` (with
        ``Retry-After``) when the tenant already has ``max_active_runs`` queued or running
        runs. The cap is counted atomically by the store's create and finish scripts; batch
        lines are outside it (the batch size limit admits them)."""
        if not isinstance(body, dict):
            raise ApiError(422, "request.invalid", "the body must be a JSON object", field="")
        unknown = sorted(set(body) - {"program", "inputs", "priority", "deadline_s"})
        if unknown:
            raise ApiError(
                422, "request.invalid", f"unknown field `{unknown[0]}`", field=f"/{unknown[0]}"
            )
        digest = await run_cpu(_digest, body)
        if idempotency_key is not None:
            existing = await self._idempotent(tenant, idempotency_key, digest)
            if existing is not None:
                return Submitted(existing, created=False)
        program, label = await self.resolve_program(tenant, body.get("program"))
        inputs = body.get("inputs", {})
        if not isinstance(inputs, dict):
            raise ApiError(422, "request.invalid", "`inputs` must be an object", field="/inputs")
        phash, dumped = await run_cpu(_checked, program, inputs)
        priority = body.get("priority", 0)
        if not isinstance(priority, int) or not 0 <= priority <= 9:
            raise ApiError(
                422,
                "request.invalid",
                "`priority` must be an integer 0..9",
                field="/priority",
                limit=9,
            )
        deadline_s = _deadline_s(body.get("deadline_s"))
        await self.bodies.put(phash, dumped)
        try:
            submitted = await self.store.submit(
                run_id=uuid.uuid4().hex,
                tenant=tenant.name,
                program=label,
                program_hash=phash,
                inputs=inputs,
                priority=priority,
                deadline_at=None if deadline_s is None else self.store.clock() + deadline_s,
                max_active=self.max_active_runs,
                idempotency_key=idempotency_key,
                digest=digest,
                traceparent=traces.traceparent(),  # the request's span: the run continues it
            )
        except ActiveRunLimit as exc:
            raise too_many_runs(exc) from None
        except IdempotencyConflict:
            raise idempotency_conflict() from None
        if submitted.created:
            await self.store.run_submitted()
            await self.enqueue(submitted.run.id, priority=priority)
        return submitted

    async def enqueue(self, run_id: str, *, priority: int = 0) -> None:
        """Send the run's Celery message (kombu is sync: in a worker thread)."""
        await anyio.to_thread.run_sync(self._send, TASK_RUN, run_id, priority)

    async def send_batch_start(self, batch_id: str, *, priority: int = 0) -> None:
        """Send a batch's start message (``sgflow.batch_start``)."""
        await anyio.to_thread.run_sync(self._send, TASK_START, batch_id, priority)

    def _send(self, task: str, arg: str, priority: int) -> None:
        self.celery.send_task(
            task, args=[arg], queue=queue_name(self.store.keys.prefix), priority=priority
        )

    async def resolve_program(self, tenant: Tenant, ref: Any) -> tuple[Program, str]:
        """The program a body's ``program`` names and its label (``name@version`` or
        ``"inline"``); raises :class:`ApiError` as :meth:`submit` does."""
        if isinstance(ref, str):
            stored = await resolve_program_ref(self.programs, tenant, ref)
            return await run_cpu(Program.model_validate, stored.program), stored.ref
        if isinstance(ref, dict):
            return await run_cpu(_inline_program, ref), "inline"
        raise ApiError(
            422,
            "request.invalid",
            "`program` is required: `name@version` or an inline program object",
            field="/program",
        )

    async def _idempotent(self, tenant: Tenant, key: str, digest: str) -> Run | None:
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise ApiError(
                422,
                "request.invalid",
                f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} characters",
                field="header:Idempotency-Key",
                limit=MAX_IDEMPOTENCY_KEY,
            )
        saved = await self.store.idempotent_run(tenant.name, key)
        if saved is None:
            return None
        run_id, body_digest = saved
        if body_digest != digest:
            raise idempotency_conflict()
        return await self.store.get(run_id, tenant=tenant.name)


# -- CPU-bound parts (run in the CPU pool) -------------------------------------------------------


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _inline_program(ref: dict[str, Any]) -> Program:
    """An inline program, statically checked; raises 422 with every problem."""
    errors = check_program(ref)
    if errors:
        first = errors[0]
        raise SgflowError(
            first.code,
            first.message,
            field="/program" + first.pointer,
            hint=first.hint or None,
            extra={"errors": [dict(e.to_dict(), field="/program" + e.pointer) for e in errors]},
        )
    return Program.model_validate(ref)


def _checked(program: Program, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The program's hash and body, once ``inputs`` are valid against its input schema;
    raises 422 ``input.invalid`` with every problem (up to 20)."""
    problems = validation_errors(inputs, program.inputs, limit=20)
    if problems:
        first = problems[0]
        raise ApiError(
            422,
            "input.invalid",
            f"inputs{first['pointer']}: {first['message']}",
            field="/inputs" + (first["pointer"] if first["pointer"] != "/" else ""),
            extra={
                "errors": [
                    {"field": "/inputs" + p["pointer"].rstrip("/"), "message": p["message"]}
                    for p in problems
                ]
            },
        )
    return program_hash(program), program.model_dump(mode="json", by_alias=True, exclude_none=True)


async def cancel_submitted(store: AsyncRunStore, submitted: Submitted) -> str:
    """Cancel a run just submitted (a check beside it refused the request); its id."""
    await store.request_cancel(submitted.run.id)
    return submitted.run.id


def too_many_runs(exc: ActiveRunLimit) -> SgflowError:
    """The 429 for a tenant at its cap of active runs (``limit.concurrent_runs``)."""
    exc.headers["Retry-After"] = str(RETRY_AFTER_S)
    return exc


def idempotency_conflict() -> SgflowError:
    """The 409 for an Idempotency-Key reused with another body."""
    return IdempotencyConflict()


def _deadline_s(value: Any) -> float | None:
    """A body's ``deadline_s``: ``None``, or seconds in ``(0, MAX_DEADLINE_S]``."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_DEADLINE_S
    ):
        raise ApiError(
            422,
            "request.invalid",
            f"`deadline_s` must be a number of seconds in (0, {MAX_DEADLINE_S}]",
            field="/deadline_s",
            limit=MAX_DEADLINE_S,
            hint="the run fails with run.deadline_exceeded if it is not done by then",
        )
    return float(value)


def run_view(run: Run, *, base_url: str = "/v1") -> dict[str, Any]:
    """The public JSON of a run."""
    result = run.output if isinstance(run.output, dict) else {}
    return {
        "id": run.id,
        "object": "run",
        "status": run.status,
        "program": run.program,
        "attempt": run.attempt,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "deadline_at": run.deadline_at,
        "output": result.get("output"),
        "steps": result.get("steps"),
        "trace": result.get("trace"),
        "usage": result.get("usage"),
        "error": run.error,
        "batch": run.parent,
        "trace_id": run.trace_id,
        "status_url": f"{base_url}/runs/{run.id}",
        "events_url": f"{base_url}/runs/{run.id}/events",
    }
