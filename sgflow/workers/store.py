"""The durable run store: the record in Redis that makes "a run accepted is never lost" true.

Celery's message only says "start this run"; the record here is the truth. A worker
:meth:`~RunStore.claim`\\ s a run (lease + attempt counter), :meth:`~RunStore.heartbeat`\\ s
the lease, and passes its :class:`Claim` to every write, which is refused once another
attempt holds the run (fencing); the reaper (:meth:`~RunStore.reap`) requeues runs whose lease
expired and fails them with ``run.max_attempts`` once they have used their attempts.

Every operation that changes state is one Lua script (:mod:`sgflow.workers.lua`), atomic in
Redis; there are no WATCH/MULTI transactions. Reads are plain commands or pipelines. The key
layout is in :mod:`sgflow.workers.records`. Works with clients made with or without
``decode_responses``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from sgflow.errors import SgflowError
from sgflow.workers import lua
from sgflow.workers.errors import LeaseLost, MaxAttemptsExceeded, RunAlreadyFinished, RunNotFound
from sgflow.workers.listing import list_runs
from sgflow.workers.records import (
    FINAL_STATUSES,
    LINE_STATUSES,
    BatchProgress,
    Claim,
    FinalStatus,
    Keys,
    Run,
)
from sgflow.workers.records import as_str as _s
from sgflow.workers.stats import Stats

__all__ = ["Event", "RunStore", "deadline_error"]

Event = tuple[str, str, dict[str, Any]]  # (event id, kind, data)
_STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")


class RunStore:
    """Runs, checkpoints, events and batch counters in one Redis.

    ``lease_s`` (default 30) is how long a claim or heartbeat holds a run; ``max_attempts``
    (default 3) how many claims a run gets before it fails with ``run.max_attempts``;
    ``result_ttl_s`` (default 7 days) how long a finished run's keys live; ``events_maxlen``
    (default 10000) the approximate cap on a run's event stream; ``clock`` (default
    ``time.time``) the epoch clock every lease is measured with. Raises ``ValueError`` for a
    setting out of range.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        prefix: str = "sgflow:",
        lease_s: float = 30,
        max_attempts: int = 3,
        result_ttl_s: int = 7 * 24 * 3600,
        events_maxlen: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lease_s <= 0 or max_attempts < 1 or result_ttl_s < 1 or events_maxlen < 1:
            raise ValueError("lease_s, max_attempts, result_ttl_s, events_maxlen must be > 0")
        self.redis = redis_client
        self.keys = Keys(prefix)
        self.stats = Stats(redis_client, prefix=prefix)
        self.lease_s = float(lease_s)
        self.max_attempts = max_attempts
        self.result_ttl_s = int(result_ttl_s)
        self.clock = clock

        def script(body: str) -> Any:
            return redis_client.register_script(lua.with_prelude(body, events_maxlen=events_maxlen))

        self._create = script(lua.CREATE)
        self._claim = script(lua.CLAIM)
        self._heartbeat = script(lua.HEARTBEAT)
        self._checkpoint = script(lua.CHECKPOINT)
        self._append = script(lua.APPEND_EVENT)
        self._finish = script(lua.FINISH)
        self._cancel = script(lua.REQUEST_CANCEL)
        self._reap = script(lua.REAP)
        self._expire_queued = script(lua.EXPIRE_QUEUED)
        self._mark_line = script(lua.MARK_LINE)

    # -- lifecycle ------------------------------------------------------------------------------

    def create(
        self,
        *,
        run_id: str,
        tenant: str,
        program: str,
        program_hash: str,
        inputs: dict[str, Any],
        parent: str | None = None,
        priority: int = 0,
        deadline_at: float | None = None,
    ) -> Run:
        """Store a queued run (event ``run.queued``) and index it; idempotent on ``run_id``.

        A second call with an existing id changes nothing and returns the stored run, whoever
        created it: ids must come from the service (unguessable), never from clients.
        ``program`` is ``name@version`` or ``"inline"``; ``parent`` the batch id, if any;
        ``deadline_at`` (epoch seconds) when the run must be done by, if ever: past it, a
        queued run is failed with ``run.deadline_exceeded`` (by :meth:`claim` or
        :meth:`reap`) and a running one by its worker.
        """
        raw = self._create_on(
            self.redis,
            run_id=run_id,
            tenant=tenant,
            program=program,
            program_hash=program_hash,
            inputs=inputs,
            parent=parent,
            priority=priority,
            deadline_at=deadline_at,
        )
        flat = [_s(x) for x in raw]
        return Run.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))

    def create_many(self, runs: Iterable[dict[str, Any]]) -> int:
        """Store many queued runs in one pipeline (one round trip, each run still one atomic
        script), exactly as :meth:`create` stores each; for batch lines. ``runs`` holds
        :meth:`create`'s keyword arguments. Returns how many were sent."""
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        for run in runs:
            self._create_on(pipe, **run)
            n += 1
        pipe.execute()
        return n

    def _create_on(
        self,
        client: Any,
        *,
        run_id: str,
        tenant: str,
        program: str,
        program_hash: str,
        inputs: dict[str, Any],
        parent: str | None = None,
        priority: int = 0,
        deadline_at: float | None = None,
    ) -> Any:
        """Run :data:`lua.CREATE` on ``client`` (the connection, or a pipeline that queues it);
        returns the script's reply (``HGETALL`` of the run), or the pipeline."""
        now = self.clock()
        fields = {
            "id": run_id,
            "tenant": tenant,
            "program": program,
            "program_hash": program_hash,
            "inputs": _dumps(inputs),
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
        }
        k = self.keys
        return self._create(
            keys=[k.run(run_id), k.events(run_id), k.tenant_runs(tenant), k.queued, k.deadlines],
            args=[run_id, repr(now), *[x for pair in fields.items() for x in pair]],
            client=client,
        )

    def claim(self, run_id: str, worker: str) -> Claim | None:
        """Take a queued run, or a running one whose lease expired, for a new attempt.

        Returns the :class:`Claim` (event ``run.started``), or ``None`` when the run is
        finished, held by a live lease, or given up now: a run past ``max_attempts`` fails
        with ``run.max_attempts``, one whose cancellation was requested ends ``cancelled``.
        Raises :class:`RunNotFound`.
        """
        now = self.clock()
        outcome, attempt = self._claim(
            keys=self._terminal_keys(run_id),
            args=[
                run_id,
                worker,
                repr(now),
                repr(now + self.lease_s),
                self.max_attempts,
                self.result_ttl_s,
                _dumps(MaxAttemptsExceeded(run_id, self.max_attempts).to_dict()),
                _dumps(worker),
                _dumps(deadline_error(run_id).to_dict()),
            ],
        )
        outcome = _s(outcome)
        if outcome == "not_found":
            raise RunNotFound(run_id)
        if outcome in ("cancelled", "max_attempts", "deadline_exceeded"):
            self.stats.run_finished("cancelled" if outcome == "cancelled" else "failed")
        return Claim(run_id, int(attempt)) if outcome == "claimed" else None

    def heartbeat(self, claim: Claim) -> bool:
        """Extend the lease by ``lease_s``; ``False`` if this attempt no longer holds it."""
        k = self.keys
        until = self.clock() + self.lease_s
        ok = self._heartbeat(
            keys=[k.run(claim.run_id), k.running], args=[claim.run_id, claim.attempt, repr(until)]
        )
        return bool(ok)

    def finish(
        self,
        claim: Claim,
        *,
        status: FinalStatus,
        output: Any = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """Write the result once: status, ``output``/``error`` (JSON), ``finished_at``.

        Sets the TTL ``result_ttl_s`` on the run's keys, appends ``run.finished`` and, for a
        batch line, counts it. Returns ``False`` (and changes nothing) if the run is already
        finished or ``claim`` is stale. Raises :class:`RunNotFound`, and ``ValueError`` for a
        status that is not final.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish needs one of {sorted(FINAL_STATUSES)}, not {status!r}")
        outcome = _s(
            self._finish(
                keys=self._terminal_keys(claim.run_id),
                args=[
                    claim.run_id,
                    claim.attempt,
                    status,
                    repr(self.clock()),
                    "" if output is None else _dumps(output),
                    "" if error is None else _dumps(error),
                    self.result_ttl_s,
                ],
            )
        )
        if outcome == "not_found":
            raise RunNotFound(claim.run_id)
        if outcome == "ok":
            self.stats.run_finished(status)
        return outcome == "ok"

    def request_cancel(self, run_id: str) -> str:
        """Cancel a run: ``"cancelled"`` at once if queued (event ``run.finished``),
        ``"requested"`` if running (the worker polls :meth:`is_cancel_requested` between steps
        and finishes as cancelled), ``"finished"`` if it already ended (nothing changes).
        Raises :class:`RunNotFound`."""
        outcome = _s(
            self._cancel(
                keys=self._terminal_keys(run_id),
                args=[run_id, repr(self.clock()), self.result_ttl_s],
            )
        )
        if outcome == "not_found":
            raise RunNotFound(run_id)
        if outcome == "cancelled":
            self.stats.run_finished("cancelled")
        return outcome

    def is_cancel_requested(self, run_id: str) -> bool:
        """Whether :meth:`request_cancel` reached this run while it was running."""
        return _s(self.redis.hget(self.keys.run(run_id), "cancel_requested")) == "1"

    # -- checkpoints and events ----------------------------------------------------------------

    def checkpoint(self, claim: Claim, step_id: str, data: dict[str, Any]) -> bool:
        """Store a finished step once; ``True`` if written now, ``False`` if it already was.

        Raises :class:`LeaseLost` for a stale claim, :class:`RunAlreadyFinished`,
        :class:`RunNotFound`.
        """
        k = self.keys
        outcome, written = self._checkpoint(
            keys=[k.run(claim.run_id), k.steps(claim.run_id)],
            args=[claim.attempt, step_id, _dumps(data)],
        )
        _raise_fenced(_s(outcome), claim)
        return bool(written)

    def checkpoints(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Every checkpoint of a run, as ``execute(..., completed=...)`` takes them."""
        raw = self.redis.hgetall(self.keys.steps(run_id))
        return {_s(step): json.loads(_s(data)) for step, data in raw.items()}

    def append_event(self, target: Claim | str, kind: str, data: dict[str, Any]) -> str:
        """Append an event; returns its id (the SSE ``id``). Fenced when given a
        :class:`Claim` (raises :class:`LeaseLost`, :class:`RunAlreadyFinished`); a run id
        writes unfenced, for the service side. Raises :class:`RunNotFound`."""
        run_id, attempt = (
            (target.run_id, str(target.attempt)) if isinstance(target, Claim) else (target, "")
        )
        k = self.keys
        outcome, event_id = self._append(
            keys=[k.run(run_id), k.events(run_id)], args=[attempt, kind, _dumps(data)]
        )
        outcome = _s(outcome)
        if isinstance(target, Claim):
            _raise_fenced(outcome, target)
        elif outcome == "not_found":
            raise RunNotFound(run_id)
        return _s(event_id)

    def read_events(
        self,
        run_id: str,
        after_id: str = "0-0",
        block_ms: int | None = None,
        count: int = 100,
    ) -> list[Event]:
        """Up to ``count`` (default 100) events after ``after_id`` (exclusive; pass
        ``Last-Event-ID``), oldest first. If there are none yet, waits up to ``block_ms`` for
        one (default ``None``: no wait; ``0`` waits for ever); the client's socket timeout must
        exceed it. Raises
        ``ValueError`` for a malformed ``after_id``."""
        if not _STREAM_ID.fullmatch(after_id):
            raise ValueError(f"{after_id[:40]!r} is not an event id")
        key = self.keys.events(run_id)
        entries: Any = self.redis.xrange(key, min="(" + after_id, count=count)
        if not entries and block_ms is not None:
            # XREAD only to wait: its reply's shape differs between redis-py versions and
            # RESP2/RESP3, XRANGE's does not
            self.redis.xread({key: after_id}, count=1, block=block_ms)
            entries = self.redis.xrange(key, min="(" + after_id, count=count)
        out: list[Event] = []
        for event_id, fields in entries:
            f = {_s(a): _s(b) for a, b in fields.items()}
            out.append((_s(event_id), f["kind"], json.loads(f["data"])))
        return out

    # -- reading --------------------------------------------------------------------------------

    def get(self, run_id: str, *, tenant: str | None = None) -> Run | None:
        """The run, or ``None``; with ``tenant``, also ``None`` for another tenant's run."""
        raw = self.redis.hgetall(self.keys.run(run_id))
        if not raw:
            return None
        run = Run.from_hash({_s(a): _s(b) for a, b in raw.items()})
        return None if tenant is not None and run.tenant != tenant else run

    def list_runs(
        self,
        tenant: str,
        *,
        status: str | None = None,
        program: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Run], str | None]:
        """A tenant's runs, newest first; see :func:`sgflow.workers.listing.list_runs`."""
        return list_runs(
            self.redis,
            self.keys,
            tenant,
            status=status,
            program=program,
            cursor=cursor,
            limit=limit,
        )

    # -- the reaper -----------------------------------------------------------------------------

    def expired_leases(self, now: float | None = None) -> list[str]:
        """Ids of running runs whose lease ended at or before ``now`` (default: the clock)."""
        now = self.clock() if now is None else now
        return [_s(x) for x in self.redis.zrangebyscore(self.keys.running, "-inf", repr(now))]

    def stale_queued(self, older_than_s: float, now: float | None = None) -> list[str]:
        """Ids queued for longer than ``older_than_s``: their Celery message may be lost
        (a crash between ``create`` and the send), so the reaper may send it again."""
        now = self.clock() if now is None else now
        top = repr(now - older_than_s)
        return [_s(x) for x in self.redis.zrangebyscore(self.keys.queued, "-inf", top)]

    def reap(self, now: float | None = None) -> list[tuple[str, str]]:
        """Deal with every expired lease: ``(id, "requeued")`` (the caller re-enqueues its
        message), ``(id, "failed")`` once it used ``max_attempts`` (``run.max_attempts``),
        ``(id, "cancelled")`` if its cancellation was requested, or
        ``(id, "deadline_exceeded")`` past its deadline; then fails the queued runs past
        their deadline (:meth:`expire_deadlines`). Each run is rechecked atomically, so a
        heartbeat that arrived in between wins."""
        now = self.clock() if now is None else now
        done: list[tuple[str, str]] = []
        for run_id in self.expired_leases(now):
            outcome = _s(
                self._reap(
                    keys=self._terminal_keys(run_id),
                    args=[
                        run_id,
                        repr(now),
                        self.max_attempts,
                        self.result_ttl_s,
                        _dumps(MaxAttemptsExceeded(run_id, self.max_attempts).to_dict()),
                        _dumps(deadline_error(run_id).to_dict()),
                    ],
                )
            )
            if outcome != "skipped":
                done.append((run_id, outcome))
            if outcome in ("failed", "cancelled", "deadline_exceeded"):
                self.stats.run_finished("cancelled" if outcome == "cancelled" else "failed")
        return done + self.expire_deadlines(now)

    def expire_deadlines(self, now: float | None = None) -> list[tuple[str, str]]:
        """Fail every run still queued at or past its deadline with
        ``run.deadline_exceeded``: ``[(id, "deadline_exceeded")]``. Runs past their deadline
        leave the ``deadlines`` index whatever their state (a running run checks its deadline
        itself, and :meth:`claim` and :meth:`reap` check it before running it again)."""
        now = self.clock() if now is None else now
        due = [_s(x) for x in self.redis.zrangebyscore(self.keys.deadlines, "-inf", repr(now))]
        done: list[tuple[str, str]] = []
        for run_id in due:
            outcome = _s(
                self._expire_queued(
                    keys=self._terminal_keys(run_id),
                    args=[
                        run_id,
                        repr(now),
                        self.result_ttl_s,
                        _dumps(deadline_error(run_id).to_dict()),
                    ],
                )
            )
            self.redis.zrem(self.keys.deadlines, run_id)
            if outcome == "deadline_exceeded":
                done.append((run_id, outcome))
                self.stats.run_finished("failed")
        return done

    # -- batches --------------------------------------------------------------------------------

    def mark_batch_line(self, batch_id: str, run_id: str, status: str) -> bool:
        """Count one line of a batch as ``succeeded`` (completed) or ``failed``,
        ``cancelled``, ``expired`` (failed), once: ``False`` if it was already counted.

        ``finish``, cancellation and the reaper already count the runs created with
        ``parent=batch_id``; call this for lines that end without a run finishing (a
        deadline, a line refused before it became a run). Raises ``ValueError`` for another
        status."""
        if status not in LINE_STATUSES:
            raise ValueError(f"a batch line ends {sorted(LINE_STATUSES)}, not {status!r}")
        k = self.keys
        keys = [k.batch_lines(batch_id), k.batch_counts(batch_id)]
        return bool(self._mark_line(keys=keys, args=[run_id, status]))

    def batch_progress(self, batch_id: str) -> BatchProgress:
        completed, failed = self.redis.hmget(
            self.keys.batch_counts(batch_id), ["completed", "failed"]
        )
        return BatchProgress(completed=int(completed or 0), failed=int(failed or 0))

    # -- helpers --------------------------------------------------------------------------------

    def _terminal_keys(self, run_id: str) -> list[str]:
        # parent never changes after create, so reading it first is safe
        parent = self.redis.hget(self.keys.run(run_id), "parent")
        return self.keys.terminal(run_id, _s(parent) if parent else None)


def deadline_error(run_id: str) -> SgflowError:
    """The error recorded on a run that was not finished by its deadline."""
    return SgflowError(
        "run.deadline_exceeded",
        f"run {run_id!r} did not finish by its deadline",
        hint="submit it again with a later deadline_s, or none",
    )


def _raise_fenced(outcome: str, claim: Claim) -> None:
    if outcome == "not_found":
        raise RunNotFound(claim.run_id)
    if outcome == "lease_lost":
        raise LeaseLost(claim.run_id, claim.attempt)
    if outcome == "already_finished":
        raise RunAlreadyFinished(claim.run_id, claim.attempt)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
