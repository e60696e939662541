"""Run a compiled program against an SGLang endpoint; return outputs and a trace per step.

Every JSON output and the final output are validated with ``jsonschema`` (the draft the
schema declares, 2020-12 by default, with format checking, every regex on RE2:
:func:`sgflow.grammars.validation.validation_errors`). A constrained step runs in a
fork of the conversation so that a failed attempt never enters it: on an invalid or
truncated value the program's policy fails the run, retries the step, or repairs it (the
step is regenerated under its grammar, on the warm prefix, with the validation error in the
prompt). A value cut off by ``max_tokens`` is a loop more often than a long answer, so the
attempt after it starts afresh, sampled, with a frequency penalty. Attempts are bounded per
step and completion tokens per run.

With an event sink, generated steps (free text and constrained, not ``select``) are
streamed: ``step.delta`` events ``{"step", "branch", "attempt", "text"}`` carry the text
generated since the previous delta, at most one per :data:`DELTA_INTERVAL_S`, and add up to
the attempt's text. An exception the sink raises on a delta (a cancellation, a deadline)
stops the generation at once and ends the run with that exception.

Each step is a span (``step <id>``) and each call to the engine inside it another
(``engine.generate``, one per attempt, or ``engine.select``), children of the span current
when :func:`execute` is called (:mod:`sgflow.traces`); fork branches continue their fork's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import sglang as sgl

from sgflow import traces
from sgflow.adapters.plan import require
from sgflow.errors import CODES
from sgflow.execution.endpoints import capabilities_of
from sgflow.execution.sglang_backend import ebnf_regex
from sgflow.grammars import safe_regex
from sgflow.grammars.validation import validation_errors
from sgflow.jsonbounds import JsonBoundsError, loads
from sgflow.programs.errors import RunError
from sgflow.programs.ir import Constraint, GenOp, ProgramIR, StepIR
from sgflow.programs.templates import TemplateFailure, evaluate, render, render_value

__all__ = ["DELTA_INTERVAL_S", "RunResult", "StepTrace", "execute", "validation_errors"]

EventSink = Callable[[str, dict[str, Any]], None]
MAX_FORK_ITEMS = 32
LOOP_PENALTY = 0.5  # frequency penalty of the attempt after one that ran into max_tokens
DELTA_INTERVAL_S = 0.25
# a trace keeps the head and the tail of a step's prompt: enough to read what the step asked,
# without copying a 100,000-character document into every run record of a batch
MAX_TRACE_PROMPT_CHARS = 8000


@dataclass
class StepTrace:
    step: str
    status: str = "ok"  # ok | skipped | resumed | failed | cancelled (the last two end the run)
    branch: int | None = None
    constraint: str = "free"
    prompt_chars: int = 0
    # the step's own turns as sent (chat-formatted), after the prompt_chars the conversation
    # already had; past MAX_TRACE_PROMPT_CHARS, its head and tail around a marker
    prompt: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: Any = None
    attempts: int = 0
    validation_errors: list[dict[str, str]] = field(default_factory=list)


@dataclass
class RunResult:
    program: str
    version: int
    ok: bool
    output: Any
    steps: dict[str, Any]
    trace: list[StepTrace]
    usage: dict[str, int]
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Deltas:
    """The ``step.delta`` events of one generation: pieces of text are batched and sent at
    most every ``interval_s`` (and the rest at the end). An exception raised by the event
    sink is kept in ``error`` and raised again into the backend, which stops generating."""

    def __init__(
        self, emit: EventSink, step: str, branch: int | None, attempt: int, interval_s: float
    ) -> None:
        self.emit = emit
        self.head = {"step": step, "branch": branch, "attempt": attempt}
        self.interval_s = interval_s
        self.pending = ""
        self.sent_at = time.monotonic()
        self.error: BaseException | None = None

    def __call__(self, text: str, final: bool) -> None:
        self.pending += text
        now = time.monotonic()
        if not self.pending or (not final and now - self.sent_at < self.interval_s):
            return
        piece, self.pending, self.sent_at = self.pending, "", now
        try:
            self.emit("step.delta", {**self.head, "text": piece})
        except BaseException as exc:
            self.error = exc
            raise


class _Run:
    def __init__(
        self,
        ir: ProgramIR,
        *,
        on_event: EventSink | None,
        started: float,
        completed: dict[str, dict[str, Any]] | None = None,
        endpoint: Any = None,
    ) -> None:
        self.ir = ir
        self.completed = completed or {}
        # deltas need a sink to go to and an endpoint that streams
        self.streams = on_event is not None and hasattr(endpoint, "deltas")
        self.endpoint = endpoint
        self.on_event = on_event or (lambda kind, data: None)
        self.started = started
        self.trace: list[StepTrace] = []
        self.tokens = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.steps: dict[str, Any] = {}

    # -- the program body ------------------------------------------------------------------

    def execute(self, s: Any, inputs: dict[str, Any]) -> None:
        ctx = {"inputs": inputs, "steps": self.steps}
        self._ctx = ctx
        if self.ir.system:
            s += sgl.system(self._render(self.ir.system, ctx, "system"))
        for role, content in self.ir.context:
            s += _turn(role, self._render(content, ctx, "context"))
        self._steps(s, self.ir.steps, ctx, branch=None)

    def _steps(
        self, s: Any, steps: tuple[StepIR, ...], ctx: dict[str, Any], *, branch: int | None
    ) -> None:
        for step in steps:
            self._check_time(step.id)
            trace = StepTrace(step=step.id, branch=branch)
            with traces.span(
                f"step {step.id}",
                attributes={"sgflow.step.id": step.id, "sgflow.step.branch": branch},
            ) as span:
                try:
                    self._one_step(s, step, ctx, trace, branch)
                finally:
                    traces.set_attributes(span, _step_attributes(trace))

    def _one_step(
        self, s: Any, step: StepIR, ctx: dict[str, Any], trace: StepTrace, branch: int | None
    ) -> None:
        if branch is None and step.id in self.completed:
            ctx["steps"][step.id] = self._replay(s, step, ctx, self.completed[step.id])
            trace.status = "resumed"
            self.trace.append(trace)
            return
        if step.condition is not None and not self._eval(step.condition, ctx, step.id):
            trace.status = "skipped"
            ctx["steps"][step.id] = None
            self._finish(trace, None, skipped=True)
            return
        self.on_event("step.started", {"step": step.id, "branch": branch})
        trace.prompt_chars = len(s.text())
        try:
            value = self._step(s, step, ctx, trace)
        except RunError as exc:
            # the step that ended the run stays in the trace: its attempts, tokens and
            # validation errors are what a user reads to see why
            trace.status = "cancelled" if exc.code == "run.cancelled" else "failed"
            trace.latency_s = round(trace.latency_s, 4)
            self.trace.append(trace)
            raise
        ctx["steps"][step.id] = value
        self._finish(trace, value, text=_assistant_text(value))

    def _step(self, s: Any, step: StepIR, ctx: dict[str, Any], trace: StepTrace) -> Any:
        if step.system is not None:
            s += sgl.system(self._render(step.system, ctx, step.id))
        user = self._render(step.user, ctx, step.id) if step.user is not None else None
        if step.think is not None:
            user = f"{user}\n\n{step.think.prompt}" if user else step.think.prompt
        if user is not None:
            s += sgl.user(user)
        if step.system is not None or user is not None:
            trace.prompt = _excerpt(s.text()[trace.prompt_chars :], MAX_TRACE_PROMPT_CHARS)
        if step.think is not None:
            name = f"{step.id}__thought"
            with self._engine_call("engine.generate", "free", 1, s) as call:
                s += sgl.assistant(sgl.gen(name, max_tokens=step.think.max_tokens, temperature=0))
                ctx["steps"][name] = self._value(s, name, step.id)
                _note_call(call, s.get_meta_info(name))
            self._account(trace, s.get_meta_info(name))
            _raise_if_aborted(s.get_meta_info(name), step.id)
            s += sgl.user(step.think.answer_prompt)
        if step.assistant is not None:
            text = self._render(step.assistant, ctx, step.id)
            s += sgl.assistant(text)
            return text
        if step.select is not None:
            t0 = time.perf_counter()
            with self._engine_call("engine.select", "select", 1, s) as call:
                s += sgl.assistant(sgl.select(step.id, choices=list(step.select)))
                value = self._value(s, step.id, step.id)
                traces.set_attributes(call, {"sgflow.choices": len(step.select)})
            trace.latency_s += time.perf_counter() - t0
            trace.attempts = 1
            trace.constraint = "select"
            return value
        if step.gen is not None:
            return self._gen(s, step, step.gen, trace)
        if step.fork is not None:
            return self._fork(s, step, ctx, trace)
        return None

    def _replay(self, s: Any, step: StepIR, ctx: dict[str, Any], saved: dict[str, Any]) -> Any:
        """Put a checkpointed step back into the conversation without generating it again."""
        if saved.get("skipped") or step.fork is not None:
            return saved.get("value")
        if step.system is not None:
            s += sgl.system(self._render(step.system, ctx, step.id))
        if step.user is not None:
            s += sgl.user(self._render(step.user, ctx, step.id))
        text = saved.get("text")
        if text is not None:
            s += sgl.assistant(text)
        return saved.get("value")

    # -- generation with validation ---------------------------------------------------------

    def _gen(self, s: Any, step: StepIR, gen: GenOp, trace: StepTrace) -> Any:
        if gen.constraint.dynamic is not None:
            gen = self._dynamic(gen, step.id)
        c = gen.constraint
        trace.constraint = c.origin or c.kind
        if c.kind == "free":
            t0 = time.perf_counter()
            with self._engine_call("engine.generate", "free", 1, s) as call:
                with self._streamed(s, trace, attempt=1):
                    s += sgl.assistant(self._gen_expr(step.id, gen, gen.temperature))
                    text = self._value(s, step.id, step.id)
                _note_call(call, s.get_meta_info(step.id))
            trace.latency_s += time.perf_counter() - t0
            trace.attempts = 1
            self._account(trace, s.get_meta_info(step.id))
            _raise_if_aborted(s.get_meta_info(step.id), step.id)
            return text
        branch = s.fork(1)[0]
        temperature, penalty = gen.temperature, 0.0
        for attempt in range(1, self.ir.max_attempts + 1):
            name = f"{step.id}__{attempt}"
            t0 = time.perf_counter()
            with self._engine_call("engine.generate", c.kind, attempt, branch) as call:
                with self._streamed(branch, trace, attempt=attempt):
                    branch += sgl.assistant(self._gen_expr(name, gen, temperature, penalty))
                    text = self._value(branch, name, step.id)
                meta = branch.get_meta_info(name) or {}
                _note_call(call, meta)
                value, problems = self._parse(text, meta, gen)
                traces.set_attributes(
                    call,
                    {
                        "sgflow.validation.valid": not problems,
                        "sgflow.validation.errors": [
                            f"{p['pointer']}: {p['message']}"[:200] for p in problems[:5]
                        ],
                    },
                )
            trace.latency_s += time.perf_counter() - t0
            trace.attempts = attempt
            self._account(trace, meta)
            if not problems:
                s += sgl.assistant(text)  # the accepted answer joins the conversation
                return value
            trace.validation_errors = problems
            self.on_event("step.invalid", {"step": step.id, "attempt": attempt, "errors": problems})
            if self.ir.on_invalid == "fail" or attempt == self.ir.max_attempts:
                break
            if _truncated(meta.get("finish_reason")):
                # the model looped until max_tokens: showing it the loop (repair) or asking
                # again greedily repeats it; start afresh, sampled, penalising repetition
                branch = s.fork(1)[0]
                temperature, penalty = max(temperature, 0.7), LOOP_PENALTY
            elif self.ir.on_invalid == "repair":
                summary = "; ".join(f"{p['pointer']}: {p['message']}" for p in problems[:3])
                branch += sgl.user(
                    f"That answer is invalid ({summary}). Reply again with a corrected answer only."
                )
            else:  # retry: a fresh attempt from the same prefix, sampled
                branch = s.fork(1)[0]
                temperature = max(temperature, 0.7)
        trace.status = "failed"
        code = "output.truncated" if _truncated(trace.finish_reason) else "output.invalid"
        raise RunError(
            code,
            f"step `{step.id}` produced no valid output in {trace.attempts} attempt(s)",
            step=step.id,
            details=trace.validation_errors,
        )

    @contextmanager
    def _streamed(self, state: Any, trace: StepTrace, *, attempt: int) -> Iterator[None]:
        """Stream the generation of ``state`` inside the block as ``step.delta`` events. If
        the event sink stopped it (by raising), its exception replaces the engine error
        that the stopped generation leaves behind."""
        if not self.streams:
            yield
            return
        deltas = _Deltas(self.on_event, trace.step, trace.branch, attempt, DELTA_INTERVAL_S)
        try:
            with self.endpoint.deltas(state, deltas):
                yield
        except RunError:
            if deltas.error is not None:
                raise deltas.error from None
            raise

    def _dynamic(self, gen: GenOp, step: str) -> GenOp:
        """Resolve a run-time JSON Schema (``json_schema_from``) and check it like a static one."""
        from sgflow.grammars import check
        from sgflow.grammars.spec import JsonSchema

        assert gen.constraint.dynamic is not None
        schema = self._eval(gen.constraint.dynamic, self._ctx, step)
        if not isinstance(schema, dict):
            raise RunError(
                "input.invalid", f"step `{step}`: the JSON Schema must be an object", step=step
            )
        errors = check(JsonSchema(schema))
        if errors:
            raise RunError(
                errors[0].code,
                f"step `{step}`: {errors[0].message}",
                step=step,
                details=[e.to_dict() for e in errors],
            )
        constraint = Constraint("json_schema", json.dumps(schema), schema=schema, origin="dynamic")
        return GenOp(constraint, gen.max_tokens, gen.temperature, gen.top_p, gen.stop)

    def _parse(
        self, text: str, meta: dict[str, Any], gen: GenOp
    ) -> tuple[Any, list[dict[str, str]]]:
        finish = meta.get("finish_reason") or {}
        if isinstance(finish, dict) and finish.get("type") == "abort":
            said = finish.get("message") or finish.get("code") or "no reason given"
            return None, [{"pointer": "", "message": f"the engine gave up: {said}"}]
        if _truncated(finish):
            return None, [
                {
                    "pointer": "",
                    "message": f"generation stopped at max_tokens={gen.max_tokens} inside the value",
                }
            ]
        c = gen.constraint
        if c.kind == "regex":  # checked again on every engine, whatever enforced it
            assert c.source is not None
            if safe_regex.fullmatch(c.source, text):
                return text, []
            return None, [{"pointer": "", "message": f"does not match the regex {c.source}"}]
        if c.kind != "json_schema":
            return text, []
        try:  # bounded like any JSON from outside: a model can nest until max_tokens
            value = loads(text)
        except JsonBoundsError as exc:
            return None, [{"pointer": exc.pointer or "", "message": f"not JSON: {exc.message}"}]
        assert c.schema is not None
        return value, validation_errors(value, c.schema)

    def _gen_expr(self, name: str, gen: GenOp, temperature: float, penalty: float = 0.0) -> Any:
        c = gen.constraint
        kwargs: dict[str, Any] = {
            "max_tokens": gen.max_tokens,
            "temperature": temperature,
            "top_p": gen.top_p,
        }
        if penalty:
            kwargs["frequency_penalty"] = penalty
        if gen.stop:
            kwargs["stop"] = list(gen.stop)
        if c.kind == "regex":
            kwargs["regex"] = c.source
        elif c.kind == "json_schema":
            kwargs["json_schema"] = c.source
        elif c.kind == "ebnf":
            assert c.source is not None
            kwargs["regex"] = ebnf_regex(c.source)  # routed to `ebnf` by SgflowEndpoint
        return sgl.gen(name, **kwargs)

    # -- fork --------------------------------------------------------------------------------

    def _fork(self, s: Any, step: StepIR, ctx: dict[str, Any], trace: StepTrace) -> list[Any]:
        fork = step.fork
        assert fork is not None
        if fork.over is not None:
            items = self._eval(fork.over, ctx, step.id)
            if not isinstance(items, list):
                raise RunError(
                    "fork.not_a_list",
                    f"fork `{step.id}`: `{fork.over}` is {type(items).__name__}, not a list",
                    step=step.id,
                )
        else:
            assert fork.n is not None
            items = list(range(fork.n))
        if len(items) > MAX_FORK_ITEMS:
            raise RunError(
                "limit.fork_width",
                f"fork `{step.id}` has {len(items)} items; the limit is {MAX_FORK_ITEMS}",
                step=step.id,
            )
        trace.constraint = "fork"
        if not items:
            return []
        branches = s.fork(len(items))
        fork_span = traces.current_context()  # the pool's threads continue the fork's span

        def run_branch(i: int) -> dict[str, Any]:
            local = {**ctx, fork.var: items[i], "steps": dict(ctx["steps"])}
            with traces.attach(fork_span):
                self._steps(branches[i], fork.steps, local, branch=i)
            return {sub.id: local["steps"].get(sub.id) for sub in fork.steps}

        with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
            return list(pool.map(run_branch, range(len(items))))

    # -- helpers -----------------------------------------------------------------------------

    @contextmanager
    def _engine_call(self, name: str, kind: str, attempt: int, state: Any) -> Iterator[traces.Span]:
        """The span of one call to the engine (a CLIENT span: the engine's time); the
        requests ``state`` makes meanwhile carry its ``traceparent``."""
        with traces.span(
            name,
            kind=traces.SpanKind.CLIENT,
            attributes={
                "sgflow.constraint.kind": kind,
                "sgflow.attempt": attempt,
                "server.address": getattr(self.endpoint, "base_url", None)
                or getattr(self.endpoint, "url", None),
            },
        ) as call:
            header = traces.traceparent()
            if header is None or not hasattr(self.endpoint, "traced"):
                yield call
                return
            with self.endpoint.traced(state, {"traceparent": header}):
                yield call

    def _value(self, s: Any, name: str, step: str) -> Any:
        try:
            value = s.get_var(name)
        except KeyError:
            value = None
        error = s.error()
        if isinstance(error, RunError):
            raise error
        if error is not None or value is None:
            raise RunError(
                "engine.error",
                f"step `{step}`: the engine failed: {error}",
                step=step,
            )
        return value

    def _account(self, trace: StepTrace, meta: dict[str, Any] | None) -> None:
        if not meta:
            return
        trace.prompt_tokens = int(meta.get("prompt_tokens", 0))
        trace.cached_tokens = int(meta.get("cached_tokens", 0))
        trace.completion_tokens += int(meta.get("completion_tokens", 0))
        trace.finish_reason = meta.get("finish_reason")
        self.prompt_tokens += trace.prompt_tokens
        self.cached_tokens += trace.cached_tokens
        self.tokens += int(meta.get("completion_tokens", 0))
        if self.tokens > self.ir.token_budget:
            raise RunError(
                "limit.token_budget",
                f"the run generated {self.tokens} tokens; its token_budget is "
                f"{self.ir.token_budget}",
                step=trace.step,
            )

    def _render(self, template: str, ctx: dict[str, Any], step: str) -> str:
        return str(_templated(render, template, ctx, step))

    def _eval(self, expression: str, ctx: dict[str, Any], step: str) -> Any:
        return _templated(evaluate, expression, ctx, step)

    def _check_time(self, step: str) -> None:
        if time.monotonic() - self.started > self.ir.timeout_s:
            raise RunError(
                "run.timeout",
                f"the run exceeded its timeout of {self.ir.timeout_s:g}s before step `{step}`",
                step=step,
            )

    def _finish(
        self, trace: StepTrace, value: Any, *, text: str | None = None, skipped: bool = False
    ) -> None:
        trace.latency_s = round(trace.latency_s, 4)
        self.trace.append(trace)
        event = {
            "step": trace.step,
            "branch": trace.branch,
            "trace": asdict(trace),
            "value": value,
            "text": text,
            "skipped": skipped,
        }
        self.on_event("step.finished", event)


def _note_call(call: traces.Span, meta: dict[str, Any] | None) -> None:
    """An engine call's tokens and finish reason, as its span's attributes."""
    meta = meta or {}
    finish = meta.get("finish_reason")
    reason = finish.get("type") if isinstance(finish, dict) else finish
    traces.set_attributes(
        call,
        {
            "gen_ai.usage.input_tokens": meta.get("prompt_tokens"),
            "gen_ai.usage.output_tokens": meta.get("completion_tokens"),
            "sgflow.cached_tokens": meta.get("cached_tokens"),
            "gen_ai.response.finish_reasons": [str(reason)] if reason else None,
        },
    )
    if isinstance(finish, dict) and finish.get("type") == "abort":
        traces.fail(
            call, {"code": finish.get("code") or "engine.error", "message": finish.get("message")}
        )


def _step_attributes(trace: StepTrace) -> dict[str, Any]:
    """A step's span attributes, from its trace."""
    return {
        "sgflow.step.status": trace.status,
        "sgflow.constraint.kind": trace.constraint,
        "sgflow.attempts": trace.attempts,
        "gen_ai.usage.input_tokens": trace.prompt_tokens,
        "gen_ai.usage.output_tokens": trace.completion_tokens,
        "sgflow.cached_tokens": trace.cached_tokens,
        "sgflow.latency_s": round(trace.latency_s, 4),
        "sgflow.validation.valid": not trace.validation_errors
        if trace.constraint not in ("free", "select", "fork")
        else None,
    }


def _templated(
    fn: Callable[[str, dict[str, Any]], Any], source: str, ctx: dict[str, Any], step: str
) -> Any:
    """Render or evaluate a user template; its failures become ``template.*`` run errors."""
    try:
        return fn(source, ctx)
    except TemplateFailure as exc:
        raise RunError(exc.code, f"step `{step}`: {exc.message}", step=step) from None


def _assistant_text(value: Any) -> str | None:
    """The assistant's words of a finished step (what a resumed run puts back)."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, list):
        return None
    return json.dumps(value, ensure_ascii=False)


def _excerpt(text: str, limit: int) -> str:
    """``text``, or past ``limit`` characters its head and tail around a marker that says
    how many were left out."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[… {len(text) - 2 * half} characters …]\n{text[-half:]}"


def _turn(role: str, text: str) -> Any:
    return {"system": sgl.system, "user": sgl.user, "assistant": sgl.assistant}[role](text)


def _raise_if_aborted(meta: dict[str, Any] | None, step: str) -> None:
    """A free-text generation the engine gave up on (``finish_reason`` ``abort``) is not an
    answer: the run ends with the engine's code (``engine.error`` when it gave none)."""
    finish = (meta or {}).get("finish_reason")
    if isinstance(finish, dict) and finish.get("type") == "abort":
        code = finish.get("code") if finish.get("code") in CODES else "engine.error"
        raise RunError(
            str(code), f"step `{step}`: the engine gave up: {finish.get('message')}", step=step
        )


def _truncated(finish: Any) -> bool:
    return isinstance(finish, dict) and finish.get("type") == "length"


def execute(
    ir: ProgramIR,
    inputs: dict[str, Any],
    endpoint: Any,
    *,
    on_event: EventSink | None = None,
    completed: dict[str, dict[str, Any]] | None = None,
) -> RunResult:
    """Run ``ir`` with ``inputs``; never raises for run failures (they are in the result).

    ``completed`` maps top-level step ids to checkpoints ``{"value", "text", "skipped"}``
    from the ``step.finished`` events of an earlier attempt: those steps are put back into
    the conversation and not generated again (their trace status is ``resumed``).

    ``on_event(kind, data)`` receives ``step.started``, ``step.delta`` (streamed text),
    ``step.invalid`` and ``step.finished``; a :class:`RunError` it raises ends the run with
    that error (raised on a ``step.delta``, it also stops the generation in progress); any
    other exception it raises propagates.
    """
    started = time.monotonic()
    run = _Run(ir, on_event=on_event, started=started, completed=completed, endpoint=endpoint)
    error: dict[str, Any] | None = None
    output: Any = None
    try:
        problems = validation_errors(inputs, ir.inputs_schema)
        if problems:
            raise RunError(
                "input.invalid",
                "the inputs do not match the program's inputs schema",
                details=problems,
            )
        inputs = _with_declared(inputs, ir.inputs_schema)
        require(ir, capabilities_of(endpoint))  # refused before any token is generated
        to_sgl_function(ir).run(inputs=inputs, run=run, backend=endpoint)
        output = _output(ir, inputs, run.steps)
    except RunError as exc:
        error = exc.to_dict()
    return RunResult(
        program=ir.name,
        version=ir.version,
        ok=error is None,
        output=output,
        steps={k: v for k, v in run.steps.items() if not k.endswith("__thought")},
        trace=run.trace,
        usage={
            "prompt_tokens": run.prompt_tokens,
            "cached_tokens": run.cached_tokens,
            "completion_tokens": run.tokens,
        },
        error=error,
    )


def _with_declared(inputs: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Declared but absent inputs get their schema ``default`` or None, so a template can
    test an optional input (``{% if inputs.notes %}``) under StrictUndefined."""
    props = schema.get("properties")
    if not isinstance(props, dict) or not isinstance(inputs, dict):
        return inputs
    filled = dict(inputs)
    for name, sub in props.items():
        if name not in filled:
            filled[name] = sub.get("default") if isinstance(sub, dict) else None
    return filled


def _output(ir: ProgramIR, inputs: dict[str, Any], steps: dict[str, Any]) -> Any:
    if ir.output_value is None:
        return {k: v for k, v in steps.items() if not k.endswith("__thought")}
    try:
        value = render_value(ir.output_value, {"inputs": inputs, "steps": steps})
    except TemplateFailure as exc:
        raise RunError(exc.code, f"output: {exc.message}") from None
    if ir.output_schema is not None:
        problems = validation_errors(value, ir.output_schema)
        if problems:
            raise RunError(
                "output.invalid", "the final output does not match output.schema", details=problems
            )
    return value


def to_sgl_function(ir: ProgramIR) -> Any:
    """An ``sgl.function(s, inputs, run)`` whose body issues ``sgl.system/user/assistant``,
    ``sgl.gen``, ``sgl.select`` and ``s.fork`` in program order (every step extends the
    prefix of the one before it); ``run`` is the executor's per-run state."""

    def program(s: Any, inputs: dict[str, Any], run: Any) -> None:
        run.execute(s, inputs)

    fn = sgl.function(program)
    fn.sgflow_ir = ir
    return fn
