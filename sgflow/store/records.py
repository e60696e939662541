"""What the store holds: run and batch records, a claim, batch progress, and the key layout.

Keys, under the store's ``prefix`` (default ``sgflow:``):

========================== ============ ========================================================
``run:<id>``               hash         the run record (fields of :class:`Run`; JSON for
                                        ``inputs``, ``output``, ``error``; ``""`` for none)
``run:<id>:steps``         hash         step id → checkpoint JSON ``{"value", "text",
                                        "skipped"}``, written once (HSETNX)
``run:<id>:events``        stream       ``kind`` + ``data`` (JSON) per entry, ``MAXLEN ~``
                                        capped
``tenant:<t>:runs``        sorted set   run ids by ``created_at``: listing, the only way to
                                        find a tenant's runs
``tenant:<t>:idem:<h>``    string       ``{"run", "body"}`` of the run an Idempotency-Key
                                        (SHA-256 ``h``) created, for 24 h
``active``                 hash         tenant → its runs that count against the
                                        concurrency cap and are not final yet
``queued``                 sorted set   ids of queued runs by when they were (re)queued
``deadlines``              sorted set   ids of runs created with a deadline, by
                                        ``deadline_at``: the reaper fails those still queued
                                        past it (entries are removed once past, whatever the
                                        run's state)
``running``                sorted set   ids of running runs by ``lease_until``: the reaper's
                                        index
``program-body:<hash>``    string       a program's JSON by content hash (write-once): what
                                        workers run
``batch:<id>``             hash         the batch record (:class:`BatchRecord`)
``batch:<id>:runs``        list         ``[custom_id, run_id]`` (JSON) per line, input order
``batch:<id>:lines``       hash         run id → final status, written once per line (HSETNX)
``batch:<id>:counts``      hash         ``completed``, ``failed``: bumped in the script that
                                        writes the line, so they always add up
``tenant:<t>:batches``     sorted set   batch ids by ``created_at``
``batches:open``           sorted set   batches not finalized yet, by ``created_at``
``batches:deadlines``      sorted set   open batches with a deadline, by ``deadline_at``
``workers:<worker>``       string       a live worker, set by its reaper loop with a TTL
``hub:<id>``               stream       wakes one API process's event hub when it follows a
                                        new run (capped, expires an hour after its last use)
``metrics:runs``           hash         run counters for ``/metrics`` (:mod:`.stats`)
``metrics:steps``          hash         step counters for ``/metrics``
``metrics:step_latency``   hash         the step-latency histogram
========================== ============ ========================================================

API keys (``apikey:<id>``, ``tenant:<t>:apikeys``, ``tenants``) are laid out in
:mod:`sgflow.store.apikeys`, stored programs (``tenant:<t>:program:…``) in
:mod:`sgflow.store.programs`.

A finished run's three ``run:<id>*`` keys expire ``result_ttl_s`` after it finished; the
sorted-set entries of expired runs are removed lazily by ``list_runs``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FINAL_STATUSES",
    "LINE_STATUSES",
    "STATUSES",
    "BatchProgress",
    "BatchRecord",
    "Claim",
    "FinalStatus",
    "Keys",
    "Run",
    "RunStatus",
    "as_str",
]

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FinalStatus = Literal["succeeded", "failed", "cancelled"]
STATUSES: tuple[RunStatus, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
# a batch line ends in one of these; "expired" is for lines a batch deadline cut off
LINE_STATUSES: frozenset[str] = FINAL_STATUSES | {"expired"}


@dataclass(frozen=True)
class Claim:
    """The right of one attempt to write to a run; every fenced write carries it."""

    run_id: str
    attempt: int


@dataclass(frozen=True)
class BatchProgress:
    """Lines of a batch that reached a final status; ``completed`` counts ``succeeded``."""

    completed: int
    failed: int

    @property
    def done(self) -> int:
        return self.completed + self.failed


@dataclass(frozen=True)
class Run:
    """A run record as stored; times are epoch seconds, ``None`` where not reached yet."""

    id: str
    tenant: str
    program: str
    program_hash: str
    inputs: dict[str, Any]
    status: RunStatus
    attempt: int
    lease_until: float | None
    worker: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    output: Any
    error: dict[str, Any] | None
    priority: int
    parent: str | None
    cancel_requested: bool
    deadline_at: float | None = None
    traceparent: str | None = None  # W3C context of the span that made the run

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def trace_id(self) -> str | None:
        """The run's trace id (32 hex digits), from its ``traceparent``."""
        parts = (self.traceparent or "").split("-")
        return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Run:
        """Parse ``HGETALL run:<id>`` (already decoded to ``str``)."""
        status = raw["status"]
        if status not in STATUSES:
            raise ValueError(f"run {raw.get('id')!r} has unknown status {status!r}")
        return cls(
            id=raw["id"],
            tenant=raw["tenant"],
            program=raw["program"],
            program_hash=raw["program_hash"],
            inputs=json.loads(raw["inputs"]),
            status=status,
            attempt=int(raw.get("attempt") or 0),
            lease_until=_float(raw.get("lease_until")),
            worker=raw.get("worker") or None,
            created_at=float(raw["created_at"]),
            started_at=_float(raw.get("started_at")),
            finished_at=_float(raw.get("finished_at")),
            output=_json(raw.get("output")),
            error=_json(raw.get("error")),
            priority=int(raw.get("priority") or 0),
            parent=raw.get("parent") or None,
            cancel_requested=raw.get("cancel_requested") == "1",
            deadline_at=_float(raw.get("deadline_at")),
            traceparent=raw.get("traceparent") or None,
        )

    def past_deadline(self, now: float) -> bool:
        """Whether the run has a deadline and ``now`` (epoch seconds) is at or past it."""
        return self.deadline_at is not None and now >= self.deadline_at


@dataclass(frozen=True)
class BatchRecord:
    """The ``batch:<id>`` hash; times are epoch seconds, ``None`` where not reached."""

    id: str
    tenant: str
    program: str
    program_hash: str
    status: str
    total: int
    cancelled: bool
    error: dict[str, Any] | None
    created_at: float
    in_progress_at: float | None
    deadline_at: float | None
    cancelling_at: float | None
    expired_at: float | None
    finalized_at: float | None
    completed_at: float | None
    failed_at: float | None
    cancelled_at: float | None
    traceparent: str | None = None  # the batch span: every line's run span is its child

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> BatchRecord:
        def t(name: str) -> float | None:
            return float(raw[name]) if raw.get(name) else None

        return cls(
            id=raw["id"],
            tenant=raw["tenant"],
            program=raw["program"],
            program_hash=raw.get("program_hash", ""),
            status=raw["status"],
            total=int(raw["total"]),
            cancelled=raw.get("cancelled") == "1",
            error=json.loads(raw["error"]) if raw.get("error") else None,
            created_at=float(raw["created_at"]),
            in_progress_at=t("in_progress_at"),
            deadline_at=t("deadline_at"),
            cancelling_at=t("cancelling_at"),
            expired_at=t("expired_at"),
            finalized_at=t("finalized_at"),
            completed_at=t("completed_at"),
            failed_at=t("failed_at"),
            cancelled_at=t("cancelled_at"),
            traceparent=raw.get("traceparent") or None,
        )


class Keys:
    """The key layout above, for one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queued = f"{prefix}queued"
        self.running = f"{prefix}running"
        self.deadlines = f"{prefix}deadlines"
        self.active = f"{prefix}active"
        self.batches_open = f"{prefix}batches:open"
        self.batches_deadlines = f"{prefix}batches:deadlines"
        self.metrics_runs = f"{prefix}metrics:runs"
        self.metrics_steps = f"{prefix}metrics:steps"
        self.metrics_latency = f"{prefix}metrics:step_latency"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}"

    def steps(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}:steps"

    def events(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}:events"

    def tenant_runs(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:runs"

    def idempotency(self, tenant: str, key: str) -> str:
        """Where an ``Idempotency-Key`` of ``tenant`` is remembered (hashed: any length or
        character is a safe key)."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self.prefix}tenant:{tenant}:idem:{digest}"

    def program_body(self, program_hash: str) -> str:
        return f"{self.prefix}program-body:{program_hash}"

    def hub(self, hub_id: str) -> str:
        """The stream an event hub is woken through (see :func:`sgflow.store.events.nudge`)."""
        return f"{self.prefix}hub:{hub_id}"

    def worker(self, worker_id: str) -> str:
        """A live worker's presence key (set with a TTL by its reaper loop)."""
        return f"{self.prefix}workers:{worker_id}"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}"

    def batch_runs(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}:runs"

    def batch_lines(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}:lines"

    def batch_counts(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}:counts"

    def tenant_batches(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:batches"

    def terminal(self, run_id: str, parent: str | None) -> list[str]:
        """KEYS of every script that may finish a run (see ``lua.PRELUDE``)."""
        keys = [
            self.run(run_id),
            self.steps(run_id),
            self.events(run_id),
            self.running,
            self.queued,
            self.active,
        ]
        if parent:
            keys += [self.batch_lines(parent), self.batch_counts(parent)]
        return keys


def as_str(value: Any) -> str:
    """A reply from Redis as ``str``, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(text: str | None) -> float | None:
    return float(text) if text else None


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None
