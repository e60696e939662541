"""The audit of ``sgflow bench chaos``: what the run store says happened, judged against
three properties. Pure: it reads evidence gathered from the store and says what broke.

- **lost**: a submitted run (or batch line) has no record, is not final (still queued or
  running: stuck), or failed with a code that means the system gave up on it
  (:data:`LOSS_CODES`: out of attempts, the engine unreachable after every retry, a time
  limit), or is final with no ``run.finished`` event (no client would hear of its result).
  A failure the program itself earned (an answer that does not fit its schema) is a
  result, not a loss.
- **recomputed**: a top-level step whose ``step.finished`` was recorded (the runner
  checkpoints it before it appends the event) is started, or finished, again later in the
  run's event stream, on a resume or a retry. Steps inside a fork's branches are not
  checkpointed one by one, so redoing them is allowed.
- **written twice**: a run's stream holds more than one ``run.finished`` (the result is
  written by the same script that appends it, so two mean two writes), or a batch's
  counts are not exactly one count per line: ``completed + failed`` above the lines, a line
  marked twice, or a line counted otherwise than its run ended.

Evidence is :class:`RunEvidence` (a run's status, error code and events, oldest first) and
:class:`BatchEvidence` (a batch's total, counters and per-line marks); :func:`audit` returns
an :class:`Audit` with the offending runs listed per property.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FINAL_STATUSES",
    "LOSS_CODES",
    "Audit",
    "BatchEvidence",
    "RunEvidence",
    "audit",
    "audit_batch",
    "loss_reason",
    "recomputed_steps",
    "result_writes",
]

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# failures that mean the system, not the program, ended the run
LOSS_CODES = frozenset(
    {
        "run.max_attempts",
        "run.time_limit",
        "run.lease_lost",
        "run.store",
        "engine.unavailable",
        "engine.error",
        "engine.overloaded",
        "engine.internal",
        "program.missing",
    }
)

Event = tuple[str, Mapping[str, Any]]  # (kind, data)


@dataclass(frozen=True)
class RunEvidence:
    """One submitted run as the store has it: ``status`` None when its record is missing;
    ``error_code`` of a failed run; ``events`` (kind, data), oldest first."""

    run_id: str
    status: str | None
    error_code: str | None = None
    events: Sequence[Event] = ()


@dataclass(frozen=True)
class BatchEvidence:
    """One batch: its ``total`` lines, ``completed``/``failed`` counters, ``marks`` (run id →
    the line status counted for it, ``batch:<id>:lines``), and the run ids of its lines."""

    batch_id: str
    total: int
    completed: int
    failed: int
    marks: Mapping[str, str]
    line_runs: Sequence[str]


@dataclass
class Audit:
    runs: int = 0
    lost: list[tuple[str, str]] = field(default_factory=list)  # (run or batch id, why)
    recomputed: list[tuple[str, str]] = field(default_factory=list)  # (run id, step id)
    written_twice: list[tuple[str, str]] = field(default_factory=list)  # (id, what)
    resumed_runs: int = 0  # runs with a run.resumed event
    steps_resumed: int = 0  # checkpointed steps put back instead of generated
    attempts: dict[int, int] = field(default_factory=dict)  # attempts used -> runs
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.recomputed or self.written_twice)

    def summary(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "lost": len(self.lost),
            "recomputed": len(self.recomputed),
            "written_twice": len(self.written_twice),
            "resumed_runs": self.resumed_runs,
            "steps_resumed": self.steps_resumed,
            "attempts": dict(sorted(self.attempts.items())),
            "statuses": dict(sorted(self.statuses.items())),
        }


def loss_reason(run: RunEvidence) -> str | None:
    """Why ``run`` counts as lost, or None when it reached a final status that is a
    result (succeeded, cancelled, or failed with a code not in :data:`LOSS_CODES`)."""
    if run.status is None:
        return "no record"
    if run.status not in FINAL_STATUSES:
        return f"stuck {run.status}"
    if run.status == "failed" and run.error_code in LOSS_CODES:
        return f"failed {run.error_code}"
    return None


def recomputed_steps(events: Iterable[Event]) -> list[str]:
    """Top-level steps started or finished again after their ``step.finished`` (their
    checkpoint) was recorded, one entry per occurrence."""
    checkpointed: set[str] = set()
    again: list[str] = []
    for kind, data in events:
        if kind not in ("step.started", "step.finished") or data.get("branch") is not None:
            continue
        step = str(data.get("step"))
        if step in checkpointed:
            again.append(step)
        elif kind == "step.finished":
            checkpointed.add(step)
    return again


def result_writes(events: Iterable[Event]) -> int:
    """How many times the run's result was written (``run.finished`` events)."""
    return sum(1 for kind, _ in events if kind == "run.finished")


def audit_batch(batch: BatchEvidence, run_status: Mapping[str, str | None]) -> list[str]:
    """What is wrong with ``batch``'s counts (empty when each line is counted exactly once,
    as its run ended); ``run_status`` maps its lines' run ids to their final status."""
    problems = []
    counted = batch.completed + batch.failed
    if counted > batch.total:
        problems.append(f"counted {counted} of {batch.total} lines")
    if len(batch.marks) > batch.total or set(batch.marks) - set(batch.line_runs):
        problems.append(f"{len(batch.marks)} marks for {batch.total} lines")
    if counted != len(batch.marks):
        problems.append(f"counters say {counted}, marks {len(batch.marks)}")
    succeeded = sum(1 for status in batch.marks.values() if status == "succeeded")
    if succeeded != batch.completed:
        problems.append(f"completed {batch.completed}, succeeded marks {succeeded}")
    for run_id, mark in batch.marks.items():
        status = run_status.get(run_id)
        if status in FINAL_STATUSES and (mark == "succeeded") != (status == "succeeded"):
            problems.append(f"line {run_id} counted {mark}, run {status}")
    return problems


def audit(runs: Iterable[RunEvidence], batches: Iterable[BatchEvidence] = ()) -> Audit:
    """Judge every run and batch (see the module docstring)."""
    result = Audit()
    status_of: dict[str, str | None] = {}
    for run in runs:
        result.runs += 1
        status_of[run.run_id] = run.status
        key = run.status or "missing"
        result.statuses[key] = result.statuses.get(key, 0) + 1
        reason = loss_reason(run)
        if reason is not None:
            result.lost.append((run.run_id, reason))
        for step in recomputed_steps(run.events):
            result.recomputed.append((run.run_id, step))
        writes = result_writes(run.events)
        if writes > 1:
            result.written_twice.append((run.run_id, f"{writes} run.finished"))
        elif writes == 0 and reason is None:  # final, but no client would ever hear of it
            result.lost.append((run.run_id, "final without run.finished"))
        attempts = sum(1 for kind, _ in run.events if kind == "run.started")
        result.attempts[attempts] = result.attempts.get(attempts, 0) + 1
        resumes = [data for kind, data in run.events if kind == "run.resumed"]
        if resumes:
            result.resumed_runs += 1
            result.steps_resumed += sum(len(data.get("steps") or ()) for data in resumes)
    for batch in batches:
        missing = batch.total - (batch.completed + batch.failed)
        if missing > 0:
            result.lost.append((batch.batch_id, f"{missing} of {batch.total} lines not counted"))
        for problem in audit_batch(batch, status_of):
            result.written_twice.append((batch.batch_id, problem))
    return result
