"""Run operations: the record in Redis that makes "a run accepted is never lost" true.

Celery's message only says "start this run"; the record here is the truth. A worker
:func:`claim`\\ s a run (lease + attempt counter), :func:`heartbeat`\\ s the lease, and passes
its :class:`~sgflow.store.records.Claim` to every write, which is refused once another
attempt holds the run (fencing); the reaper (:mod:`sgflow.store.reaper`) requeues runs whose lease expired
and fails them with ``run.max_attempts`` once they have used their attempts.

Every operation that changes state is one Lua script (:mod:`sgflow.store.lua`), atomic in
Redis; there are no WATCH/MULTI transactions. Reads are plain commands or pipelines. Each
function here is an operation (:mod:`sgflow.store.ops`): run it with
:class:`~sgflow.store.RunStore` (sync) or :class:`~sgflow.store.AsyncRunStore`, which
document the same calls as methods.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sgflow.errors import SgflowError
from sgflow.store import stats
from sgflow.store.config import StoreConfig
from sgflow.store.errors import (
    ActiveRunLimit,
    IdempotencyConflict,
    LeaseLost,
    MaxAttemptsExceeded,
    RunAlreadyFinished,
    RunNotFound,
)
from sgflow.store.idempotency import IDEMPOTENCY_TTL_S
from sgflow.store.ops import Eval, Op, Pipe, call
from sgflow.store.records import (
    FINAL_STATUSES,
    LINE_STATUSES,
    BatchProgress,
    Claim,
    FinalStatus,
    Run,
    as_str,
)

__all__ = [
    "Submitted",
    "active_runs",
    "append_event",
    "batch_progress",
    "checkpoint",
    "checkpoints",
    "claim",
    "create",
    "create_many",
    "deadline_error",
    "finish",
    "get",
    "heartbeat",
    "is_cancel_requested",
    "mark_batch_line",
    "request_cancel",
    "submit",
    "terminal_keys",
]


# -- lifecycle ----------------------------------------------------------------------------------


def create(
    cfg: StoreConfig,
    *,
    run_id: str,
    tenant: str,
    program: str,
    program_hash: str,
    inputs: dict[str, Any],
    parent: str | None = None,
    priority: int = 0,
    deadline_at: float | None = None,
    traceparent: str | None = None,
) -> Op[Run]:
    """Store a queued run (event ``run.queued``) and index it; idempotent on ``run_id``.

    A second call with an existing id changes nothing and returns the stored run, whoever
    created it: ids must come from the service (unguessable), never from clients.
    ``program`` is ``name@version`` or ``"inline"``; ``parent`` the batch id, if any;
    ``deadline_at`` (epoch seconds) when the run must be done by, if ever: past it, a
    queued run is failed with ``run.deadline_exceeded`` (by :func:`claim` or the reaper)
    and a running one by its worker; ``traceparent`` the W3C context of the span that made
    it, which the worker's run span continues (:mod:`sgflow.traces`). The run does not count
    against its tenant's concurrency cap (see :func:`submit`).
    """
    _outcome, detail = yield _create_eval(
        cfg,
        run_id=run_id,
        tenant=tenant,
        program=program,
        program_hash=program_hash,
        inputs=inputs,
        parent=parent,
        priority=priority,
        deadline_at=deadline_at,
        traceparent=traceparent,
    )
    return _run_of_flat(detail)


@dataclass(frozen=True)
class Submitted:
    """What :func:`submit` did: the ``run``, and whether it was ``created`` now (``False``:
    the run an idempotency key already named)."""

    run: Run
    created: bool


def submit(
    cfg: StoreConfig,
    *,
    run_id: str,
    tenant: str,
    program: str,
    program_hash: str,
    inputs: dict[str, Any],
    priority: int = 0,
    deadline_at: float | None = None,
    max_active: int | None = None,
    idempotency_key: str | None = None,
    digest: str = "",
    traceparent: str | None = None,
) -> Op[Submitted]:
    """Create a run as a client asked for it, in one atomic script: counted against
    ``tenant``'s cap of ``max_active`` queued or running runs (default None: no cap, not
    counted), and remembered under ``idempotency_key`` with the request's ``digest`` (for
    24 h).

    Returns the new run, or the run the key already names when ``digest`` matches. Raises
    :class:`ActiveRunLimit` when the tenant is at its cap (nothing is created) and
    :class:`IdempotencyConflict` when the key was used with another digest. A constant
    number of Redis calls, whatever the tenant has stored. ``run_id`` must be new (made by
    the caller for this submission).
    """
    replace = False
    while True:
        outcome, detail = yield _create_eval(
            cfg,
            run_id=run_id,
            tenant=tenant,
            program=program,
            program_hash=program_hash,
            inputs=inputs,
            priority=priority,
            deadline_at=deadline_at,
            max_active=max_active,
            idempotency=None if idempotency_key is None else (idempotency_key, run_id, digest),
            replace=replace,
            traceparent=traceparent,
        )
        outcome = as_str(outcome)
        if outcome == "limited":
            assert max_active is not None
            raise ActiveRunLimit(tenant, max_active, int(as_str(detail)))
        if outcome != "idempotent":
            # "exists": the id is the caller's fresh one, so this is our own create, answered
            # once more (a client that resends a command after a broken connection)
            return Submitted(_run_of_flat(detail), created=True)
        saved = json.loads(as_str(detail))
        if saved["body"] != digest:
            raise IdempotencyConflict()
        existing = yield from get(cfg, saved["run"], tenant=tenant)
        if existing is not None:
            return Submitted(existing, created=False)
        replace = True  # the key outlived its run (a result TTL under 24 h): take it over


def active_runs(cfg: StoreConfig, tenant: str) -> Op[int]:
    """How many of ``tenant``'s runs count against its cap now (queued or running runs
    made by :func:`submit` with a cap)."""
    raw = yield call("hget", cfg.keys.active, tenant)
    return int(as_str(raw)) if raw is not None else 0


def create_many(cfg: StoreConfig, runs: Iterable[dict[str, Any]]) -> Op[int]:
    """Store many queued runs in one pipeline (one round trip, each run still one atomic
    script), exactly as :func:`create` stores each; for batch lines. ``runs`` holds
    :func:`create`'s keyword arguments. Returns how many were sent."""
    steps = [_create_eval(cfg, **run) for run in runs]
    if steps:
        yield Pipe(steps)
    return len(steps)


def _create_eval(
    cfg: StoreConfig,
    *,
    run_id: str,
    tenant: str,
    program: str,
    program_hash: str,
    inputs: dict[str, Any],
    parent: str | None = None,
    priority: int = 0,
    deadline_at: float | None = None,
    max_active: int | None = None,
    idempotency: tuple[str, str, str] | None = None,
    replace: bool = False,
    traceparent: str | None = None,
) -> Eval:
    """:data:`lua.CREATE` for one run; its reply is ``{outcome, detail}``. ``idempotency``
    is ``(key, run id, body digest)``."""
    now = cfg.clock()
    fields = {
        "id": run_id,
        "tenant": tenant,
        "program": program,
        "program_hash": program_hash,
        "inputs": dumps(inputs),
        "status": "queued",
        "attempt": "0",
        "lease_until": "",
        "worker": "",
        "created_at": repr(now),
        "started_at": "",
        "finished_at": "",
        "output": "",
        "error": "",
        "priority": str(int(priority)),
        "parent": parent or "",
        "cancel_requested": "0",
        "deadline_at": "" if deadline_at is None else repr(float(deadline_at)),
        "traceparent": traceparent or "",
    }
    k = cfg.keys
    keys = [k.run(run_id), k.events(run_id), k.tenant_runs(tenant), k.queued, k.deadlines, k.active]
    remembered = ""
    if idempotency is not None:
        key, named, digest = idempotency
        keys.append(k.idempotency(tenant, key))
        remembered = json.dumps({"run": named, "body": digest})
    return Eval(
        cfg.scripts.create,
        keys=keys,
        args=[
            run_id,
            repr(now),
            tenant,
            "" if max_active is None else int(max_active),
            remembered,
            IDEMPOTENCY_TTL_S,
            "1" if replace else "0",
            *[x for pair in fields.items() for x in pair],
        ],
    )


def claim(cfg: StoreConfig, run_id: str, worker: str) -> Op[Claim | None]:
    """Take a queued run, or a running one whose lease expired, for a new attempt.

    Returns the :class:`Claim` (event ``run.started``), or ``None`` when the run is
    finished, held by a live lease, or given up now: a run past ``max_attempts`` fails
    with ``run.max_attempts``, one whose cancellation was requested ends ``cancelled``.
    Raises :class:`RunNotFound`.
    """
    now = cfg.clock()
    keys = yield from terminal_keys(cfg, run_id)
    outcome, attempt = yield Eval(
        cfg.scripts.claim,
        keys=keys,
        args=[
            run_id,
            worker,
            repr(now),
            repr(now + cfg.lease_s),
            cfg.max_attempts,
            cfg.result_ttl_s,
            dumps(MaxAttemptsExceeded(run_id, cfg.max_attempts).to_dict()),
            dumps(worker),
            dumps(deadline_error(run_id)),
        ],
    )
    outcome = as_str(outcome)
    if outcome == "not_found":
        raise RunNotFound(run_id)
    if outcome in ("cancelled", "max_attempts", "deadline_exceeded"):
        yield from stats.run_finished(cfg.keys, "cancelled" if outcome == "cancelled" else "failed")
    return Claim(run_id, int(attempt)) if outcome == "claimed" else None


def heartbeat(cfg: StoreConfig, claim: Claim) -> Op[bool]:
    """Extend the lease by ``lease_s``; ``False`` if this attempt no longer holds it."""
    k = cfg.keys
    until = cfg.clock() + cfg.lease_s
    ok = yield Eval(
        cfg.scripts.heartbeat,
        keys=[k.run(claim.run_id), k.running],
        args=[claim.run_id, claim.attempt, repr(until)],
    )
    return bool(ok)


def finish(
    cfg: StoreConfig,
    claim: Claim,
    *,
    status: FinalStatus,
    output: Any = None,
    error: dict[str, Any] | None = None,
) -> Op[bool]:
    """Write the result once: status, ``output``/``error`` (JSON), ``finished_at``.

    Sets the TTL ``result_ttl_s`` on the run's keys, appends ``run.finished`` and, for a
    batch line, counts it. Returns ``False`` (and changes nothing) if the run is already
    finished or ``claim`` is stale. Raises :class:`RunNotFound`, and ``ValueError`` for a
    status that is not final.
    """
    if status not in FINAL_STATUSES:
        raise ValueError(f"finish needs one of {sorted(FINAL_STATUSES)}, not {status!r}")
    keys = yield from terminal_keys(cfg, claim.run_id)
    outcome = as_str(
        (
            yield Eval(
                cfg.scripts.finish,
                keys=keys,
                args=[
                    claim.run_id,
                    claim.attempt,
                    status,
                    repr(cfg.clock()),
                    "" if output is None else dumps(output),
                    "" if error is None else dumps(error),
                    cfg.result_ttl_s,
                ],
            )
        )
    )
    if outcome == "not_found":
        raise RunNotFound(claim.run_id)
    if outcome == "ok":
        yield from stats.run_finished(cfg.keys, status)
    return outcome == "ok"


def request_cancel(cfg: StoreConfig, run_id: str) -> Op[str]:
    """Cancel a run: ``"cancelled"`` at once if queued (event ``run.finished``),
    ``"requested"`` if running (the worker polls :func:`is_cancel_requested` between steps
    and finishes as cancelled), ``"finished"`` if it already ended (nothing changes).
    Raises :class:`RunNotFound`."""
    keys = yield from terminal_keys(cfg, run_id)
    outcome = as_str(
        (
            yield Eval(
                cfg.scripts.request_cancel,
                keys=keys,
                args=[run_id, repr(cfg.clock()), cfg.result_ttl_s],
            )
        )
    )
    if outcome == "not_found":
        raise RunNotFound(run_id)
    if outcome == "cancelled":
        yield from stats.run_finished(cfg.keys, "cancelled")
    return outcome


def is_cancel_requested(cfg: StoreConfig, run_id: str) -> Op[bool]:
    """Whether :func:`request_cancel` reached this run while it was running."""
    flag = yield call("hget", cfg.keys.run(run_id), "cancel_requested")
    return flag is not None and as_str(flag) == "1"


# -- checkpoints and events ---------------------------------------------------------------------


def checkpoint(cfg: StoreConfig, claim: Claim, step_id: str, data: dict[str, Any]) -> Op[bool]:
    """Store a finished step once; ``True`` if written now, ``False`` if it already was.

    Raises :class:`LeaseLost` for a stale claim, :class:`RunAlreadyFinished`,
    :class:`RunNotFound`.
    """
    k = cfg.keys
    outcome, written = yield Eval(
        cfg.scripts.checkpoint,
        keys=[k.run(claim.run_id), k.steps(claim.run_id)],
        args=[claim.attempt, step_id, dumps(data)],
    )
    _raise_fenced(as_str(outcome), claim)
    return bool(written)


def checkpoints(cfg: StoreConfig, run_id: str) -> Op[dict[str, dict[str, Any]]]:
    """Every checkpoint of a run, as ``execute(..., completed=...)`` takes them."""
    raw = yield call("hgetall", cfg.keys.steps(run_id))
    return {as_str(step): json.loads(as_str(data)) for step, data in raw.items()}


def append_event(cfg: StoreConfig, target: Claim | str, kind: str, data: dict[str, Any]) -> Op[str]:
    """Append an event; returns its id (the SSE ``id``). Fenced when given a
    :class:`Claim` (raises :class:`LeaseLost`, :class:`RunAlreadyFinished`); a run id
    writes unfenced, for the service side. Raises :class:`RunNotFound`."""
    run_id, attempt = (
        (target.run_id, str(target.attempt)) if isinstance(target, Claim) else (target, "")
    )
    k = cfg.keys
    outcome, event_id = yield Eval(
        cfg.scripts.append_event,
        keys=[k.run(run_id), k.events(run_id)],
        args=[attempt, kind, dumps(data)],
    )
    outcome = as_str(outcome)
    if isinstance(target, Claim):
        _raise_fenced(outcome, target)
    elif outcome == "not_found":
        raise RunNotFound(run_id)
    return as_str(event_id)


# -- reading ------------------------------------------------------------------------------------


def get(cfg: StoreConfig, run_id: str, *, tenant: str | None = None) -> Op[Run | None]:
    """The run, or ``None``; with ``tenant``, also ``None`` for another tenant's run."""
    raw = yield call("hgetall", cfg.keys.run(run_id))
    if not raw:
        return None
    run = Run.from_hash({as_str(a): as_str(b) for a, b in raw.items()})
    return None if tenant is not None and run.tenant != tenant else run


# -- batch lines --------------------------------------------------------------------------------


def mark_batch_line(cfg: StoreConfig, batch_id: str, run_id: str, status: str) -> Op[bool]:
    """Count one line of a batch as ``succeeded`` (completed) or ``failed``,
    ``cancelled``, ``expired`` (failed), once: ``False`` if it was already counted.

    :func:`finish`, cancellation and the reaper already count the runs created with
    ``parent=batch_id``; call this for lines that end without a run finishing (a
    deadline, a line refused before it became a run). Raises ``ValueError`` for another
    status."""
    if status not in LINE_STATUSES:
        raise ValueError(f"a batch line ends {sorted(LINE_STATUSES)}, not {status!r}")
    k = cfg.keys
    keys = [k.batch_lines(batch_id), k.batch_counts(batch_id)]
    return bool((yield Eval(cfg.scripts.mark_line, keys=keys, args=[run_id, status])))


def batch_progress(cfg: StoreConfig, batch_id: str) -> Op[BatchProgress]:
    completed, failed = yield call(
        "hmget", cfg.keys.batch_counts(batch_id), ["completed", "failed"]
    )
    return BatchProgress(completed=int(completed or 0), failed=int(failed or 0))


# -- helpers ------------------------------------------------------------------------------------


def terminal_keys(cfg: StoreConfig, run_id: str) -> Op[list[str]]:
    """The KEYS of a script that may finish ``run_id`` (:meth:`Keys.terminal`)."""
    # parent never changes after create, so reading it first is safe
    parent = yield call("hget", cfg.keys.run(run_id), "parent")
    return cfg.keys.terminal(run_id, as_str(parent) if parent else None)


def deadline_error(run_id: str) -> dict[str, Any]:
    """The error recorded on a run that was not finished by its deadline (as stored)."""
    return SgflowError(
        "run.deadline_exceeded",
        f"run {run_id!r} did not finish by its deadline",
        hint="submit it again with a later deadline_s, or none",
    ).to_dict()


def _raise_fenced(outcome: str, claim: Claim) -> None:
    if outcome == "not_found":
        raise RunNotFound(claim.run_id)
    if outcome == "lease_lost":
        raise LeaseLost(claim.run_id, claim.attempt)
    if outcome == "already_finished":
        raise RunAlreadyFinished(claim.run_id, claim.attempt)


def _run_of_flat(raw: Any) -> Run:
    flat = [as_str(x) for x in raw]
    return Run.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept: how the store writes every JSON value."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
