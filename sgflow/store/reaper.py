"""The reaper's operations: runs whose lease expired (their worker died or stalled) are
requeued, or failed with ``run.max_attempts`` once they used their attempts, or ended as
their cancellation or deadline says; queued runs past their deadline fail without running;
runs queued for long may have lost their Celery message and are sent again by the caller.

Every worker runs the reaper in its loop: each run is rechecked atomically in its script, so
several reapers, or a heartbeat arriving between the scan and the script, are harmless.
Operations (see :mod:`sgflow.store.ops`).
"""

from __future__ import annotations

from sgflow.store import stats
from sgflow.store.config import StoreConfig
from sgflow.store.errors import MaxAttemptsExceeded
from sgflow.store.ops import Eval, Op, call
from sgflow.store.records import as_str
from sgflow.store.runs import deadline_error, dumps, terminal_keys

__all__ = ["expire_deadlines", "expired_leases", "reap", "stale_queued"]


def expired_leases(cfg: StoreConfig, now: float | None = None) -> Op[list[str]]:
    """Ids of running runs whose lease ended at or before ``now`` (default: the clock)."""
    now = cfg.clock() if now is None else now
    ids = yield call("zrangebyscore", cfg.keys.running, "-inf", repr(now))
    return [as_str(x) for x in ids]


def stale_queued(cfg: StoreConfig, older_than_s: float, now: float | None = None) -> Op[list[str]]:
    """Ids queued for longer than ``older_than_s``: their Celery message may be lost
    (a crash between ``create`` and the send), so the reaper may send it again."""
    now = cfg.clock() if now is None else now
    ids = yield call("zrangebyscore", cfg.keys.queued, "-inf", repr(now - older_than_s))
    return [as_str(x) for x in ids]


def reap(cfg: StoreConfig, now: float | None = None) -> Op[list[tuple[str, str]]]:
    """Deal with every expired lease: ``(id, "requeued")`` (the caller re-enqueues its
    message), ``(id, "failed")`` once it used ``max_attempts`` (``run.max_attempts``),
    ``(id, "cancelled")`` if its cancellation was requested, or
    ``(id, "deadline_exceeded")`` past its deadline; then fails the queued runs past
    their deadline (:func:`expire_deadlines`). Each run is rechecked atomically, so a
    heartbeat that arrived in between wins."""
    now = cfg.clock() if now is None else now
    done: list[tuple[str, str]] = []
    for run_id in (yield from expired_leases(cfg, now)):
        keys = yield from terminal_keys(cfg, run_id)
        outcome = as_str(
            (
                yield Eval(
                    cfg.scripts.reap,
                    keys=keys,
                    args=[
                        run_id,
                        repr(now),
                        cfg.max_attempts,
                        cfg.result_ttl_s,
                        dumps(MaxAttemptsExceeded(run_id, cfg.max_attempts).to_dict()),
                        dumps(deadline_error(run_id)),
                    ],
                )
            )
        )
        if outcome != "skipped":
            done.append((run_id, outcome))
        if outcome in ("failed", "cancelled", "deadline_exceeded"):
            yield from stats.run_finished(
                cfg.keys, "cancelled" if outcome == "cancelled" else "failed"
            )
    return done + (yield from expire_deadlines(cfg, now))


def expire_deadlines(cfg: StoreConfig, now: float | None = None) -> Op[list[tuple[str, str]]]:
    """Fail every run still queued at or past its deadline with
    ``run.deadline_exceeded``: ``[(id, "deadline_exceeded")]``. Runs past their deadline
    leave the ``deadlines`` index whatever their state (a running run checks its deadline
    itself, and a claim and :func:`reap` check it before running it again)."""
    now = cfg.clock() if now is None else now
    k = cfg.keys
    due = [as_str(x) for x in (yield call("zrangebyscore", k.deadlines, "-inf", repr(now)))]
    done: list[tuple[str, str]] = []
    for run_id in due:
        keys = yield from terminal_keys(cfg, run_id)
        outcome = as_str(
            (
                yield Eval(
                    cfg.scripts.expire_queued,
                    keys=keys,
                    args=[run_id, repr(now), cfg.result_ttl_s, dumps(deadline_error(run_id))],
                )
            )
        )
        yield call("zrem", k.deadlines, run_id)
        if outcome == "deadline_exceeded":
            done.append((run_id, outcome))
            yield from stats.run_finished(k, "failed")
    return done
