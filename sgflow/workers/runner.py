"""One attempt at one run: claim it, resume from checkpoints, execute, write the result once.

Celery only delivers "start run X"; everything that matters is in the run store. The runner
claims the run (a second delivery of the same message finds it claimed or finished and does
nothing), heartbeats the lease from a thread, checkpoints every finished top-level step and
publishes events with its claim (a zombie attempt's writes are refused), checks for
cancellation and the run's deadline before each step and on each streamed ``step.delta``
(a few times a second, which stops the generation in progress), and finishes the run
exactly once. Deltas go to the event stream only: they are not checkpointed or counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from sgflow.programs import RunError, RunResult, SgflowEndpoint, compile_program, execute
from sgflow.programs.model import Program
from sgflow.store import Claim, LeaseLost, ProgramBodies, Run, RunStore, deadline_error

__all__ = ["Runner"]

log = logging.getLogger("sgflow.workers.runner")


@dataclass
class _Attempt:
    claim: Claim
    lost: threading.Event
    stop: threading.Event


class Runner:
    """Runs claimed runs against one SGLang endpoint (a server, or a router in front of many).

    ``endpoint_factory`` is called lazily and its result reused (``RuntimeEndpoint`` asks the
    engine for model info when built); ``worker_id`` names this worker in run records. A
    retryable failure (the engine unreachable or erroring) is retried ``engine_retries``
    times (default 3) after ``backoff_s * 2**n`` seconds (default 1 s), each time resuming after
    the checkpointed steps, then the run fails with the engine's error code.
    """

    def __init__(
        self,
        store: RunStore,
        bodies: ProgramBodies,
        *,
        endpoint_factory: Callable[[], SgflowEndpoint],
        worker_id: str,
        engine_retries: int = 3,
        backoff_s: float = 1.0,
    ) -> None:
        self.store = store
        self.bodies = bodies
        self._endpoint_factory = endpoint_factory
        self._endpoint: SgflowEndpoint | None = None
        self.worker_id = worker_id
        self.engine_retries = engine_retries
        self.backoff_s = backoff_s

    @property
    def endpoint(self) -> SgflowEndpoint:
        if self._endpoint is None:
            self._endpoint = self._endpoint_factory()
        return self._endpoint

    def run(self, run_id: str) -> str:
        """Process one delivery; returns what happened (``skipped``, or the final status)."""
        claim = self.store.claim(run_id, self.worker_id)
        if claim is None:
            return "skipped"
        attempt = _Attempt(claim, threading.Event(), threading.Event())
        beat = threading.Thread(target=self._heartbeat, args=(attempt,), daemon=True)
        beat.start()
        try:
            return self._execute(attempt)
        except LeaseLost:
            log.warning("lease lost", extra={"run_id": run_id, "attempt": claim.attempt})
            return "lease_lost"
        finally:
            attempt.stop.set()
            beat.join(timeout=5)

    def _heartbeat(self, attempt: _Attempt) -> None:
        interval = max(0.5, self.store.lease_s / 3)
        while not attempt.stop.wait(interval):
            try:
                if not self.store.heartbeat(attempt.claim):
                    attempt.lost.set()
                    return
            except redis.RedisError:
                log.warning("heartbeat failed", extra={"run_id": attempt.claim.run_id})

    def _execute(self, attempt: _Attempt) -> str:
        claim = attempt.claim
        run = self.store.get(claim.run_id)
        if run is None:
            return "skipped"
        body = self.bodies.get(run.program_hash)
        if body is None:
            return self._finish(
                attempt,
                "failed",
                error={
                    "code": "program.missing",
                    "message": f"the program body {run.program_hash[:12]}… is not in the store",
                },
            )
        ir = compile_program(Program.model_validate(body))
        for retry in range(self.engine_retries + 1):
            result = self._attempt_once(attempt, ir, run)
            error = result.error or {}
            if result.ok or not error.get("retryable") or retry == self.engine_retries:
                break
            delay = self.backoff_s * (2**retry)
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
            if attempt.lost.wait(delay):
                raise LeaseLost(claim.run_id, claim.attempt)
        return self._result(attempt, result)

    def _check_stop(self, run: Run) -> None:
        """Raise the :class:`RunError` that ends ``run`` now: ``run.deadline_exceeded`` past
        its deadline, ``run.cancelled`` once a cancellation was requested."""
        if run.past_deadline(self.store.clock()):
            error = deadline_error(run.id)
            raise RunError(error["code"], error["message"])
        if self.store.is_cancel_requested(run.id):
            raise RunError("run.cancelled", "the run was cancelled")

    def _attempt_once(self, attempt: _Attempt, ir: Any, run: Run) -> RunResult:
        """One execution, resuming after every checkpointed step; engine trouble is a
        retryable ``engine.unavailable`` result rather than an exception."""
        claim = attempt.claim
        completed = self.store.checkpoints(claim.run_id)
        if completed:
            self.store.append_event(claim, "run.resumed", {"steps": sorted(completed)})

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if attempt.lost.is_set():
                raise LeaseLost(claim.run_id, claim.attempt)
            if kind in ("step.started", "step.delta"):
                self._check_stop(run)
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

        try:
            endpoint = self.endpoint
        except Exception as exc:  # RuntimeEndpoint asks the engine for its model when built
            return RunResult(
                program=ir.name,
                version=ir.version,
                ok=False,
                output=None,
                steps={},
                trace=[],
                usage={},
                error={
                    "code": "engine.unavailable",
                    "retryable": True,
                    "message": f"the engine cannot be reached: {exc}",
                },
            )
        return execute(ir, run.inputs, endpoint, on_event=on_event, completed=completed)

    def _result(self, attempt: _Attempt, result: RunResult) -> str:
        if result.ok:
            return self._finish(
                attempt,
                "succeeded",
                output={
                    "output": result.output,
                    "steps": result.steps,
                    "trace": [vars(t) for t in result.trace],
                    "usage": result.usage,
                },
            )
        error = result.error or {"code": "internal", "message": "no error recorded"}
        status = "cancelled" if error.get("code") == "run.cancelled" else "failed"
        return self._finish(attempt, status, error=error)

    def _finish(
        self, attempt: _Attempt, status: str, *, output: Any = None, error: Any = None
    ) -> str:
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
