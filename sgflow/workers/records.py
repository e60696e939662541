"""What the run store holds: the run record, a claim, batch progress, and the key layout.

Keys, under the store's ``prefix`` (default ``sgflow:``):

====================== ============ ===========================================================
``run:<id>``           hash         the run record (fields of :class:`Run`; JSON for
                                    ``inputs``, ``output``, ``error``; ``""`` for none)
``run:<id>:steps``     hash         step id → checkpoint JSON ``{"value", "text", "skipped"}``,
                                    written once (HSETNX)
``run:<id>:events``    stream       ``kind`` + ``data`` (JSON) per entry, ``MAXLEN ~`` capped
``tenant:<t>:runs``    sorted set   run ids by ``created_at``: listing, the only way to find
                                    a tenant's runs
``queued``             sorted set   ids of queued runs by when they were (re)queued
``deadlines``          sorted set   ids of runs created with a deadline, by ``deadline_at``:
                                    the reaper fails those still queued past it (entries
                                    are removed once past, whatever the run's state)
``running``            sorted set   ids of running runs by ``lease_until``: the reaper's index
``batch:<id>:lines``   hash         run id → final status, written once per line (HSETNX)
``batch:<id>:counts``  hash         ``completed``, ``failed``: bumped in the script that writes
                                    the line, so they always add up to the lines written
``workers:<worker>``   string       a live worker, set by its reaper loop with a TTL
``metrics:runs``       hash         run counters for ``/metrics`` (:mod:`sgflow.workers.stats`)
``metrics:steps``      hash         step counters for ``/metrics`` (:mod:`sgflow.workers.stats`)
====================== ============ ===========================================================

A finished run's three ``run:<id>*`` keys expire ``result_ttl_s`` after it finished; the
sorted-set entries of expired runs are removed lazily by ``list_runs``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FINAL_STATUSES",
    "LINE_STATUSES",
    "STATUSES",
    "BatchProgress",
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

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

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
        )

    def past_deadline(self, now: float) -> bool:
        """Whether the run has a deadline and ``now`` (epoch seconds) is at or past it."""
        return self.deadline_at is not None and now >= self.deadline_at


class Keys:
    """The key layout above, for one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queued = f"{prefix}queued"
        self.running = f"{prefix}running"
        self.deadlines = f"{prefix}deadlines"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}"

    def steps(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}:steps"

    def events(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}:events"

    def tenant_runs(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:runs"

    def worker(self, worker_id: str) -> str:
        """A live worker's presence key (set with a TTL by its reaper loop)."""
        return f"{self.prefix}workers:{worker_id}"

    def batch_lines(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}:lines"

    def batch_counts(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}:counts"

    def terminal(self, run_id: str, parent: str | None) -> list[str]:
        """KEYS of every script that may finish a run (see ``lua.PRELUDE``)."""
        keys = [
            self.run(run_id),
            self.steps(run_id),
            self.events(run_id),
            self.running,
            self.queued,
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
