"""One attempt at one run: claim it, resume from checkpoints, execute, write the result once.

Celery only delivers "start run X"; everything that matters is in the run store. The runner
claims the run (a second delivery of the same message finds it claimed or finished and does
nothing), heartbeats the lease from a thread, checkpoints every finished top-level step and
publishes events with its claim (a zombie attempt's writes are refused), checks for
cancellation and the run's deadline before each step and on each streamed ``step.delta``
(a few times a second, which stops the generation in progress), and finishes the run
exactly once. Deltas go to the event stream only: they are not checkpointed or counted.

**The hard time limit** (``time_limit_s``, ``SGFLOW_CELERY_HARD_TIME_LIMIT_S``): Celery's
threads pool, which ``sgflow worker`` runs, ignores ``task_time_limit``, so the runner keeps its
own watchdog (the heartbeat thread). When an attempt has run that long, the watchdog fails the
run at once with ``run.time_limit`` (a fenced write: the record is final at the limit, whatever
the attempt's thread is doing) and flags the attempt; the thread stops at its next event, which
for a streamed generation is its next ``step.delta`` (a few times a second: the engine drops the
sequence). A thread blocked on an engine that sends nothing is bounded by the stream's read
timeout; its late writes are refused. The limit is measured per attempt, like Celery's.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from sgflow import traces
from sgflow.adapters.detect import EngineUnrecognised
from sgflow.execution import RunResult, execute
from sgflow.programs import RunError, compile_program
from sgflow.programs.model import Program
from sgflow.store import (
    Claim,
    LeaseLost,
    ProgramBodies,
    Run,
    RunAlreadyFinished,
    RunStore,
    TimeLimitExceeded,
    deadline_error,
)
from sgflow.workers.engines import EnginePool

__all__ = ["Runner"]

log = logging.getLogger("sgflow.workers.runner")


@dataclass
class _Attempt:
    claim: Claim
    lost: threading.Event = field(default_factory=threading.Event)  # the lease is gone
    expired: threading.Event = field(default_factory=threading.Event)  # past the time limit
    halt: threading.Event = field(default_factory=threading.Event)  # lost or expired
    stop: threading.Event = field(default_factory=threading.Event)  # the attempt is over
    started: float = field(default_factory=time.monotonic)
    recorded: bool = False  # the watchdog wrote the run.time_limit result


class Runner:
    """Runs claimed runs against the engines of ``engines`` (:class:`EnginePool`: one server,
    a router in front of many, or several servers tried in a per-run order).

    ``worker_id`` names this worker in run records. A retryable failure (the engine
    unreachable or erroring) is retried ``engine_retries`` times (default 6) after
    ``min(backoff_s * 2**n, max_backoff_s)`` seconds (default 1 s doubling up to 15 s: about 45 s
    in all, longer than an engine takes to restart on a loaded machine; ``sgflow bench chaos``
    measured 6-9 s), each time resuming after the checkpointed steps
    (on the next engine of the run's order, when there are several), then the run fails with
    the engine's error code. ``time_limit_s`` (default None: no limit) bounds one attempt: past
    it the run fails with ``run.time_limit`` (see the module docstring).
    """

    def __init__(
        self,
        store: RunStore,
        bodies: ProgramBodies,
        *,
        engines: EnginePool,
        worker_id: str,
        engine_retries: int = 6,
        backoff_s: float = 1.0,
        max_backoff_s: float = 15.0,
        time_limit_s: float | None = None,
    ) -> None:
        if time_limit_s is not None and time_limit_s <= 0:
            raise ValueError("time_limit_s must be positive")
        self.store = store
        self.bodies = bodies
        self.engines = engines
        self.worker_id = worker_id
        self.engine_retries = engine_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.time_limit_s = time_limit_s

    def run(self, run_id: str) -> str:
        """Process one delivery; returns what happened (``skipped``, ``lease_lost``,
        ``time_limit``, or the final status)."""
        claim = self.store.claim(run_id, self.worker_id)
        if claim is None:
            return "skipped"
        attempt = _Attempt(claim)
        watch = threading.Thread(target=self._watch, args=(attempt,), daemon=True)
        watch.start()
        try:
            outcome = self._execute(attempt)
        except LeaseLost:
            log.warning("lease lost", extra={"run_id": run_id, "attempt": claim.attempt})
            outcome = "lease_lost"
        except RunAlreadyFinished:  # the watchdog finished it while a write was on its way
            outcome = "already_finished"
        finally:
            attempt.stop.set()
            watch.join(timeout=5)
        return "time_limit" if attempt.recorded else outcome

    def _watch(self, attempt: _Attempt) -> None:
        """Heartbeat the lease every ``lease_s / 3`` (at least 0.5 s) and enforce the time
        limit, until the attempt is over, its lease is lost, or it ran out of time."""
        interval = max(0.5, self.store.lease_s / 3)
        limit_at = attempt.started + self.time_limit_s if self.time_limit_s else float("inf")
        beat_at = attempt.started + interval
        while not attempt.stop.wait(max(0.0, min(beat_at, limit_at) - time.monotonic())):
            now = time.monotonic()
            if now >= limit_at:
                self._expire(attempt)
                return
            if now < beat_at:
                continue
            beat_at = now + interval
            try:
                if not self.store.heartbeat(attempt.claim):
                    attempt.lost.set()
                    attempt.halt.set()
                    return
            except redis.RedisError:
                log.warning("heartbeat failed", extra={"run_id": attempt.claim.run_id})

    def _expire(self, attempt: _Attempt) -> None:
        """Fail the run with ``run.time_limit`` now and flag the attempt to stop."""
        claim = attempt.claim
        assert self.time_limit_s is not None
        attempt.expired.set()
        attempt.halt.set()
        try:
            written = self.store.finish(claim, status="failed", error=self._time_limit_error(claim))
        except redis.RedisError:  # the attempt's thread writes it when it stops
            log.exception("could not record the time limit", extra={"run_id": claim.run_id})
            return
        if not written:  # the attempt finished (or lost the run) just before the limit
            return
        attempt.recorded = True
        log.warning(
            "run stopped at the hard time limit",
            extra={
                "run_id": claim.run_id,
                "attempt": claim.attempt,
                "limit_s": self.time_limit_s,
            },
        )

    def _time_limit_error(self, claim: Claim) -> dict[str, Any]:
        assert self.time_limit_s is not None
        return TimeLimitExceeded(claim.run_id, self.time_limit_s).to_dict()

    def _execute(self, attempt: _Attempt) -> str:
        claim = attempt.claim
        run = self.store.get(claim.run_id)
        if run is None:
            return "skipped"
        # this attempt's span continues the span that made the run (the API request, or the
        # batch), whichever process runs it and however often it is resumed
        with traces.span(
            f"run {run.program}",
            kind=traces.SpanKind.CONSUMER,
            parent=traces.context_of(run.traceparent),
            attributes={
                "sgflow.run.id": run.id,
                "sgflow.program": run.program,
                "sgflow.run.attempt": claim.attempt,
                "sgflow.batch.id": run.parent,
                "sgflow.worker": self.worker_id,
            },
        ) as span:
            outcome = self._execute_run(attempt, run)
            traces.set_attributes(span, {"sgflow.run.outcome": outcome})
            log.info(
                "run attempt ended",
                extra={"run_id": run.id, "attempt": claim.attempt, "outcome": outcome},
            )
            return outcome

    def _execute_run(self, attempt: _Attempt, run: Run) -> str:
        claim = attempt.claim
        body = self.bodies.get(run.program_hash)
        if body is None:
            return self._finish(
                attempt,
                "failed",
                error=RunError(
                    "program.missing",
                    f"the program body {run.program_hash[:12]}… is not in the store",
                ).to_dict(),
            )
        ir = compile_program(Program.model_validate(body))
        for retry in range(self.engine_retries + 1):
            result = self._attempt_once(attempt, ir, run, retry)
            error = result.error or {}
            if result.ok or not error.get("retryable") or retry == self.engine_retries:
                break
            if attempt.expired.is_set():
                break
            delay = min(self.backoff_s * (2**retry), self.max_backoff_s)
            self.store.append_event(
                claim,
                "run.retrying",
                {
                    "retry": retry + 1,
                    "of": self.engine_retries,
                    "delay_s": delay,
                    "error": {"code": error.get("code"), "message": error.get("message")},
                },
            )
            if attempt.halt.wait(delay):
                if attempt.lost.is_set():
                    raise LeaseLost(claim.run_id, claim.attempt)
                break  # expired
        if attempt.expired.is_set():  # written by the watchdog already, unless Redis failed it
            return self._finish(attempt, "failed", error=self._time_limit_error(claim))
        return self._result(attempt, result, batch_line=run.parent is not None)

    def _check_stop(self, attempt: _Attempt, run: Run) -> None:
        """Raise the :class:`RunError` that ends ``run`` now: ``run.time_limit`` once the
        watchdog expired the attempt, ``run.deadline_exceeded`` past its deadline,
        ``run.cancelled`` once a cancellation was requested."""
        if attempt.expired.is_set():
            assert self.time_limit_s is not None
            stopped = TimeLimitExceeded(run.id, self.time_limit_s)
            raise RunError(stopped.code, stopped.message)
        if run.past_deadline(self.store.clock()):
            err = deadline_error(run.id)
            raise RunError(err["code"], err["message"], hint=err["hint"])
        if self.store.is_cancel_requested(run.id):
            raise RunError("run.cancelled", "the run was cancelled")

    def _attempt_once(self, attempt: _Attempt, ir: Any, run: Run, retry: int) -> RunResult:
        """One execution (engine try ``retry``), resuming after every checkpointed step;
        engine trouble is a retryable ``engine.unavailable`` result rather than an
        exception."""
        claim = attempt.claim
        completed = self.store.checkpoints(claim.run_id)
        if completed:
            self.store.append_event(claim, "run.resumed", {"steps": sorted(completed)})

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if attempt.expired.is_set():
                self._check_stop(attempt, run)
            if attempt.lost.is_set():
                raise LeaseLost(claim.run_id, claim.attempt)
            if kind in ("step.started", "step.delta"):
                self._check_stop(attempt, run)
            if kind == "step.finished" and data.get("branch") is None:
                self.store.checkpoint(
                    claim,
                    data["step"],
                    {
                        "value": data.get("value"),
                        "text": data.get("text"),
                        "skipped": bool(data.get("skipped")),
                    },
                )
            event = _event_data(kind, data)
            self.store.append_event(claim, kind, event)
            if kind == "step.finished" and data.get("branch") is None:
                self.store.stats.step_finished(event["latency_s"], event["usage"])

        url = self.engines.pick(run.id, retry)
        try:
            endpoint = self.engines.endpoint(url)
        except Exception as exc:  # building asks the engine what it is and its model
            error = (
                RunError("engine.unrecognised", str(exc), hint="name the kind: KIND+http://…")
                if isinstance(exc, EngineUnrecognised) and "answers, but" in str(exc)
                else RunError("engine.unavailable", f"the engine {url} cannot be reached: {exc}")
            )
            return RunResult(
                program=ir.name,
                version=ir.version,
                ok=False,
                output=None,
                steps={},
                trace=[],
                usage={},
                error=error.to_dict(),
            )
        return execute(ir, run.inputs, endpoint, on_event=on_event, completed=completed)

    def _result(self, attempt: _Attempt, result: RunResult, *, batch_line: bool = False) -> str:
        """Write the run's result. A batch line's trace keeps no rendered prompts: up to
        8,000 characters a step, over 10,000 lines, would weigh hundreds of MB in Redis;
        its tokens, attempts and errors stay."""
        trace = [vars(t) for t in result.trace]
        if batch_line:
            trace = [{**row, "prompt": ""} for row in trace]
        if result.ok:
            return self._finish(
                attempt,
                "succeeded",
                output={
                    "output": result.output,
                    "steps": result.steps,
                    "trace": trace,
                    "usage": result.usage,
                },
            )
        error = result.error or RunError("run.failed", "no error recorded").to_dict()
        status = "cancelled" if error.get("code") == "run.cancelled" else "failed"
        # no output, but what the run did until it ended: its steps, trace and tokens
        partial = {
            "output": None,
            "steps": result.steps,
            "trace": trace,
            "usage": result.usage,
        }
        return self._finish(attempt, status, output=partial, error=error)

    def _finish(
        self, attempt: _Attempt, status: str, *, output: Any = None, error: Any = None
    ) -> str:
        span = traces.current_span()
        usage = output.get("usage") if isinstance(output, dict) else None
        traces.set_attributes(
            span,
            {
                "sgflow.run.status": status,
                "gen_ai.usage.input_tokens": (usage or {}).get("prompt_tokens"),
                "gen_ai.usage.output_tokens": (usage or {}).get("completion_tokens"),
                "sgflow.cached_tokens": (usage or {}).get("cached_tokens"),
            },
        )
        if error:
            traces.fail(span, error)
        written = self.store.finish(attempt.claim, status=status, output=output, error=error)  # type: ignore[arg-type]
        return status if written else "already_finished"


def _event_data(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    if kind != "step.finished":
        return data
    trace = data.get("trace") or {}
    return {
        "step": data.get("step"),
        "branch": data.get("branch"),
        "status": trace.get("status"),
        "value": data.get("value"),
        "usage": {k: trace.get(k) for k in ("prompt_tokens", "cached_tokens", "completion_tokens")},
        "attempts": trace.get("attempts"),
        "latency_s": trace.get("latency_s"),
    }
