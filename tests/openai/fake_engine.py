"""A fake engine for the OpenAI surface's tests: the one part faked.

:class:`FakeEngine` implements the SGLang frontend's backend interface (what
``sgflow.programs.execute`` talks to) with canned replies instead of a model, so a
translated request runs through the real checker, compiler and executor (validation,
repair, forks, ``select``, streamed ``step.delta`` events) without an engine. Replies are
taken in order from a list (or computed by a function of the prompt and the sampling
parameters); each is streamed to the executor's delta sink in small pieces.

:func:`serve` is the HTTP side: an ``httpx2`` handler that answers the OpenAI SDK with the
builders of ``sgflow.openai``, as phase 2's routes will, around a run of the fake engine.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
from sglang.lang.backend.base_backend import BaseBackend
from sglang.lang.chat_template import get_chat_template
from sglang.lang.choices import ChoicesDecision

from sgflow.errors import SgflowError
from sgflow.openai import (
    ChatStream,
    Plan,
    ResponsesStream,
    RunFold,
    RunRecord,
    answer_headers,
    chat_completion,
    openai_error,
    parse_chat_request,
    parse_responses_request,
    plan_chat,
    plan_responses,
    response_object,
)
from sgflow.programs import compile_program, execute
from sgflow.programs.checker import check_program
from sgflow.programs.model import Program

Reply = str | tuple[str, str]  # text, or (text, finish type "stop" | "length")


@dataclass
class Call:
    prompt: str
    params: dict[str, Any]


@dataclass
class FakeEngine(BaseBackend):  # type: ignore[misc]
    """Canned replies for ``gen`` (in order, or ``reply(prompt, params)``) and a canned
    ``select`` decision (``choose(prompt, choices)``, default the first choice)."""

    replies: list[Reply] = field(default_factory=list)
    reply: Callable[[str, dict[str, Any]], Reply] | None = None
    choose: Callable[[str, list[str]], str] | None = None
    piece: int = 3  # characters per streamed piece
    prompt_tokens: int = 40
    cached_tokens: int = 24

    def __post_init__(self) -> None:
        BaseBackend.__init__(self)
        self.chat_template = get_chat_template("chatml")
        self.calls: list[Call] = []
        self._sinks: dict[int, Callable[[str, bool], None]] = {}
        self._lock = threading.Lock()

    def get_model_name(self) -> str:
        return "fake"

    @contextmanager
    def deltas(self, state: Any, sink: Callable[[str, bool], None]) -> Iterator[None]:
        key = id(getattr(state, "stream_executor", state))
        self._sinks[key] = sink
        try:
            yield
        finally:
            self._sinks.pop(key, None)

    def generate(self, s: Any, sampling_params: Any) -> tuple[str, dict[str, Any]]:
        params = sampling_params.to_srt_kwargs()
        with self._lock:
            self.calls.append(Call(s.text_, params))
            reply = self.reply(s.text_, params) if self.reply else self.replies.pop(0)
        text, finish = reply if isinstance(reply, tuple) else (reply, "stop")
        sink = self._sinks.get(id(s))
        if sink is not None:
            for i in range(0, len(text), self.piece):
                sink(text[i : i + self.piece], False)
            sink("", True)
        tokens = max(1, len(text) // 4)
        if finish == "length":
            tokens = int(params.get("max_new_tokens") or tokens)
        return text, {
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "completion_tokens": tokens,
            "finish_reason": {"type": finish},
        }

    def select(
        self, s: Any, choices: list[str], temperature: float, choices_method: Any = None
    ) -> ChoicesDecision:
        with self._lock:
            self.calls.append(Call(s.text_, {"select": list(choices)}))
        decision = self.choose(s.text_, choices) if self.choose else choices[0]
        return ChoicesDecision(decision=decision, meta_info={})


def stored(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """An executor event as the run store keeps it (what the worker appends)."""
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


_ids = itertools.count(1)


@dataclass
class Ran:
    plan: Plan
    record: RunRecord
    events: list[tuple[str, dict[str, Any]]]


def run_plan(plan: Plan, engine: FakeEngine) -> Ran:
    """Run ``plan``'s program as a worker would (checked, compiled, executed on the fake
    engine), keeping its events in the store's form."""
    assert isinstance(plan.program, dict)
    problems = check_program(plan.program)
    assert not problems, [p.to_dict() for p in problems]
    events: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()

    def on_event(kind: str, data: dict[str, Any]) -> None:
        with lock:
            events.append((kind, stored(kind, json.loads(json.dumps(data)))))

    ir = compile_program(Program.model_validate(plan.program))
    result = execute(ir, plan.inputs, engine, on_event=on_event)  # type: ignore[arg-type]
    status = "succeeded" if result.ok else "failed"
    events.append(("run.finished", {"status": status, "error": result.error}))
    run_id = f"run{next(_ids):04d}"
    record = RunRecord(
        id=run_id,
        status=status,
        created_at=1_700_000_000.0,
        output=json.loads(json.dumps(result.output)) if result.ok else None,
        trace=tuple(json.loads(json.dumps(vars(t))) for t in result.trace) if result.ok else (),
        usage=result.usage if result.ok else None,
        error=result.error,
    )
    return Ran(plan, record, events)


def _error(err: SgflowError) -> httpx2.Response:
    answer = openai_error(err)
    return httpx2.Response(answer.status, json=answer.body, headers=answer.headers)


@dataclass
class Service:
    """The OpenAI surface in front of the fake engine: an ``httpx2`` handler; ``runs``
    keeps each request's run."""

    engine: FakeEngine
    runs: list[Ran] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        path = request.url.path
        try:
            if path.endswith("/chat/completions"):
                plan = plan_chat(parse_chat_request(body))
            elif path.endswith("/responses"):
                plan = plan_responses(parse_responses_request(body))
            else:
                return httpx2.Response(404, json={"error": {"message": path, "type": "x"}})
            ran = run_plan(plan, self.engine)
            self.runs.append(ran)
            headers = answer_headers(plan, ran.record.id)
            if plan.stream:
                return httpx2.Response(
                    200,
                    content=self._stream(ran).encode(),
                    headers={**headers, "content-type": "text/event-stream"},
                )
            fold = RunFold(plan)
            for kind, data in ran.events:
                fold.feed(kind, data)
            if plan.endpoint == "chat":
                answer = chat_completion(plan, ran.record, fold)
            else:
                answer = response_object(plan, ran.record, fold)
            return httpx2.Response(200, json=answer, headers=headers)
        except SgflowError as err:
            return _error(err)

    def _stream(self, ran: Ran) -> str:
        stream: ChatStream | ResponsesStream
        if ran.plan.endpoint == "chat":
            stream = ChatStream(ran.plan, run_id=ran.record.id, created=ran.record.created_at)
        else:
            stream = ResponsesStream(ran.plan, run_id=ran.record.id, created=ran.record.created_at)
        out = [stream.start()]
        out += [stream.feed(kind, data) for kind, data in ran.events]
        out.append(stream.finish(ran.record))
        return "".join(out)
