"""What a run of a plan produced: its choices, read from the run record and its events.

Both OpenAI endpoints answer from the same two sources, the run's record (``run_view``:
``output``, ``trace``, ``usage``, ``error``) and its event stream (``step.started``,
``step.delta`` ``{step, branch, attempt, text}``, ``step.finished``
``{step, branch, value, usage, …}``, ``run.finished`` …):

- :class:`RunFold` folds events as they arrive into per-choice :class:`Piece`\\ s for the
  streamers: worded text, or call pieces (:class:`~sgflow.openai.calls_stream.CallScanner`).
  A live plan passes every delta of its answer steps on; a buffered one passes a constrained
  step on only once it finished, i.e. validated. Free text answers always stream.
- :func:`final_choices` reads the finished run into :class:`Choice`\\ s. A succeeded run's
  output is one object per choice; a run that failed with ``output.truncated`` still answers:
  the choices that finished (from the fold) as they are, the others with
  ``finish_reason: length`` and the text they had when cut off (never as a complete answer);
  any other failure is raised as the run's error.

A run restarted after a worker died or the engine failed (``run.retrying``,
``run.requeued``, ``run.resumed``, ``run.started`` of a later attempt) regenerates the steps it had not checkpointed: the fold
forgets their partial text, and if some of it was already streamed it marks itself
``broken`` (the streamer then ends the stream with ``stream.restarted``; the client asks
again) rather than splice two generations into one answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sgflow.errors import SgflowError
from sgflow.openai.calls_stream import CallScanner
from sgflow.openai.plan import ANSWER_STEP, CALLS_STEP, DECIDE_STEP, Plan

__all__ = ["Choice", "Piece", "RunFold", "RunRecord", "Usage", "final_choices"]

FinishReason = Literal["stop", "length", "tool_calls"]
_RESTARTS = frozenset({"run.retrying", "run.requeued", "run.resumed"})


@dataclass(frozen=True)
class RunRecord:
    """A run as the store answers it: ``id``, ``status``, ``created_at`` (epoch s), and once
    finished ``output`` (the program's output), ``trace`` (one dict per step), ``usage``
    (``prompt_tokens``, ``cached_tokens``, ``completion_tokens``) or ``error``."""

    id: str
    status: str
    created_at: float
    output: Any = None
    trace: tuple[dict[str, Any], ...] = ()
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> RunRecord:
        """From :func:`sgflow.service.runs.run_view`'s dict."""
        return cls(
            id=str(view["id"]),
            status=str(view["status"]),
            created_at=float(view.get("created_at") or 0),
            output=view.get("output"),
            trace=tuple(view.get("trace") or ()),
            usage=view.get("usage"),
            error=view.get("error"),
        )


@dataclass
class Usage:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: dict[str, Any] | None) -> None:
        for key in ("prompt_tokens", "cached_tokens", "completion_tokens"):
            setattr(self, key, getattr(self, key) + int((usage or {}).get(key) or 0))

    @classmethod
    def of(cls, usage: dict[str, Any] | None) -> Usage:
        out = cls()
        out.add(usage)
        return out


@dataclass(frozen=True)
class Choice:
    """One answer: worded ``text`` (JSON text for a JSON answer) or ``calls``
    ``[(name, arguments JSON text)]``, and why it ended."""

    index: int
    text: str | None
    calls: tuple[tuple[str, str], ...] = ()
    finish_reason: FinishReason = "stop"


@dataclass(frozen=True)
class Piece:
    """Something to stream for choice ``choice``: worded ``text``, or (``kind`` ``call``) a
    piece of call ``call``'s arguments, ``name`` set on the call's first piece."""

    choice: int
    kind: Literal["text", "call"]
    text: str
    call: int = 0
    name: str | None = None


@dataclass
class _ChoiceState:
    decision: str | None = None
    values: dict[str, Any] = field(default_factory=dict)  # finished step → value
    attempt: tuple[str, int] | None = None  # (step, attempt) of the text in `partial`
    partial: str = ""
    sent: bool = False  # something of an unfinished step was streamed
    streamed: bool = False  # something of this choice was streamed
    scanner: CallScanner | None = None
    usage: dict[str, int] = field(default_factory=dict)


def _dumps(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _calls(value: Any) -> tuple[tuple[str, str], ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(
        (str(c.get("name")), json.dumps(c.get("arguments"), ensure_ascii=False))
        for c in items
        if isinstance(c, dict)
    )


class RunFold:
    """Run events → per-choice pieces to stream, and what each choice has finished with."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.choices = [_ChoiceState() for _ in range(plan.n)]
        self.usage = Usage()
        self.broken = False
        self.finished: dict[str, Any] | None = None  # run.finished's data

    def _choice(self, data: dict[str, Any]) -> _ChoiceState | None:
        branch = data.get("branch")
        if self.plan.n == 1:
            return self.choices[0] if branch is None else None
        if isinstance(branch, int) and 0 <= branch < self.plan.n:
            return self.choices[branch]
        return None

    def _streams(self, step: str) -> bool:
        """Whether ``step``'s deltas go to the client as they come."""
        if step == ANSWER_STEP and not self.plan.answer_is_json:
            return True  # free text: never retried
        return self.plan.live

    def feed(self, kind: str, data: dict[str, Any]) -> list[Piece]:
        """Fold one event; the pieces it makes streamable (maybe none)."""
        if kind in _RESTARTS or (kind == "run.started" and int(data.get("attempt") or 1) > 1):
            self._restart()
            return []
        if kind == "run.finished":
            self.finished = data
            return []
        step = data.get("step")
        if self.plan.mode == "program" or step not in (ANSWER_STEP, CALLS_STEP, DECIDE_STEP):
            return []  # a stored program's steps are its own: only its output is the answer
        state = self._choice(data)
        if state is None:
            return []
        index = self.choices.index(state)
        if kind == "step.delta" and step != DECIDE_STEP:
            return self._delta(index, state, str(step), data)
        if kind == "step.finished":
            return self._finished(index, state, str(step), data)
        return []

    def _restart(self) -> None:
        # n = 1: finished steps are checkpointed and come back without events, only a step
        # streamed but unfinished is generated again. n > 1: the whole fork is one step,
        # generated again from its start, so anything streamed is lost.
        forked = self.plan.n > 1
        for state in self.choices:
            if state.sent or (forked and state.streamed):
                self.broken = True
            state.attempt, state.partial, state.sent, state.scanner = None, "", False, None
            if forked:
                state.values, state.decision = {}, None

    def _delta(
        self, index: int, state: _ChoiceState, step: str, data: dict[str, Any]
    ) -> list[Piece]:
        key = (step, int(data.get("attempt") or 1))
        text = str(data.get("text") or "")
        if state.attempt != key:
            if state.sent and self._streams(step):
                self.broken = True  # a second attempt after text was streamed
            state.attempt, state.partial, state.scanner = key, "", None
        state.partial += text
        if not self._streams(step) or not text:
            return []
        state.sent = state.streamed = True
        if step == ANSWER_STEP:
            return [Piece(index, "text", text)]
        if state.scanner is None:
            state.scanner = CallScanner(array=self.plan.parallel)
        return [Piece(index, "call", p.text, p.call, p.name) for p in state.scanner.feed(text)]

    def _finished(
        self, index: int, state: _ChoiceState, step: str, data: dict[str, Any]
    ) -> list[Piece]:
        usage = data.get("usage") or {
            k: (data.get("trace") or {}).get(k)
            for k in ("prompt_tokens", "cached_tokens", "completion_tokens")
        }
        self.usage.add(usage)
        state.usage = {k: int(v or 0) for k, v in usage.items()}
        skipped = bool(data.get("skipped")) or data.get("status") == "skipped"
        if step == DECIDE_STEP:
            state.decision = data.get("value")
            return []
        if skipped:
            return []
        value = data.get("value")
        state.values[step] = value
        streamed, state.sent = state.sent, False
        if streamed and self._streams(step):
            return []  # its deltas already added up to it
        state.streamed = True
        if step == ANSWER_STEP:
            return [Piece(index, "text", _dumps(value))]
        pieces = []
        for k, (name, arguments) in enumerate(_calls(value)):
            pieces += [Piece(index, "call", "", k, name), Piece(index, "call", arguments, k)]
        return pieces

    def partial_text(self, index: int) -> str | None:
        """The text choice ``index`` had when its step stopped (None if it had none)."""
        state = self.choices[index]
        return state.partial or None


# -- the finished run -------------------------------------------------------------------------


def _finish_from_trace(record: RunRecord, step: str, branch: int | None) -> FinishReason:
    for entry in record.trace:
        if entry.get("step") == step and entry.get("branch") == branch:
            finish = entry.get("finish_reason")
            if isinstance(finish, dict) and finish.get("type") == "length":
                return "length"
    return "stop"


def _choice_from_value(
    plan: Plan, index: int, value: Any, finish: FinishReason, record: RunRecord | None
) -> Choice:
    if plan.mode == "program":
        return Choice(index, _dumps(value))
    value = value if isinstance(value, dict) else {}
    if value.get(CALLS_STEP) is not None:
        return Choice(index, None, _calls(value[CALLS_STEP]), "tool_calls")
    if record is not None:
        finish = _finish_from_trace(record, ANSWER_STEP, None if plan.n == 1 else index)
    answer = value.get(ANSWER_STEP)
    return Choice(index, None if answer is None else _dumps(answer), (), finish)


def _heuristic_finish(plan: Plan, state: _ChoiceState) -> FinishReason:
    """Without the trace: a worded answer that used all of max_tokens was cut off."""
    used = state.usage.get("completion_tokens", 0)
    return "length" if plan.max_tokens and used >= plan.max_tokens else "stop"


def final_choices(
    plan: Plan, record: RunRecord | None, fold: RunFold | None = None
) -> tuple[list[Choice], Usage]:
    """The choices and usage of a finished run (``record``, and the ``fold`` of its events
    when there is one). Raises the run's error as :class:`SgflowError` (with ``run`` set)
    when it failed otherwise than by a cut-off, or was cancelled."""
    if record is None and plan.mode == "program":
        raise ValueError("a program model's answer is its output: pass the run record")
    finished = (fold.finished if fold is not None else None) or {}
    status = record.status if record is not None else finished.get("status")
    error = record.error if record is not None else finished.get("error")
    run_id = record.id if record is not None else None
    if status == "succeeded" and record is not None:
        if plan.mode == "program" and plan.output_schema is not None:
            _check_program_output(plan.output_schema, record)
        outputs = record.output if plan.mode != "program" else [record.output]
        if not isinstance(outputs, list) or len(outputs) != plan.n:
            raise SgflowError("run.failed", "the run's output has not the expected shape")
        choices = [_choice_from_value(plan, i, v, "stop", record) for i, v in enumerate(outputs)]
        return choices, Usage.of(record.usage)
    if status == "succeeded" and fold is not None:
        choices = [
            _choice_from_value(plan, i, s.values, _heuristic_finish(plan, s), None)
            for i, s in enumerate(fold.choices)
        ]
        return choices, fold.usage
    error = error or {"code": "run.failed", "message": "the run failed"}
    if status == "failed" and error.get("code") == "output.truncated" and plan.mode != "program":
        if record is not None and record.usage:
            usage = Usage.of(record.usage)  # the cut-off attempts count, as OpenAI bills them
        else:
            usage = fold.usage if fold is not None else Usage()
        return _truncated(plan, fold), usage
    raise SgflowError.from_dict(error, run=run_id)


def _truncated(plan: Plan, fold: RunFold | None) -> list[Choice]:
    choices = []
    for i in range(plan.n):
        state = fold.choices[i] if fold is not None else None
        if state is not None and (CALLS_STEP in state.values or ANSWER_STEP in state.values):
            choices.append(_choice_from_value(plan, i, state.values, "stop", None))
        else:
            # a cut-off call is no call at all; a cut-off answer keeps its text (as OpenAI)
            calling = (
                state is not None and state.attempt is not None and (state.attempt[0] == CALLS_STEP)
            )
            partial = fold.partial_text(i) if fold is not None and not calling else None
            choices.append(Choice(i, partial, (), "length"))
    return choices


def _check_program_output(schema: dict[str, Any], record: RunRecord) -> None:
    """A program model's output against the request's ``json_schema`` response format."""
    from sgflow.grammars.validation import validation_errors

    problems = validation_errors(record.output, schema)
    if problems:
        raise SgflowError(
            "output.invalid",
            "the program's output does not match the response format's schema: "
            f"{problems[0]['pointer']}: {problems[0]['message']}",
            field="/response_format",
            extra={"run": record.id, "errors": problems},
        )
