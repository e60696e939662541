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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
from sglang.lang.backend.base_backend import BaseBackend
from sglang.lang.chat_template import get_chat_template
from sglang.lang.choices import ChoicesDecision

from sgflow.errors import SgflowError
from sgflow.execution import execute
from sgflow.execution.deltas import DeltaSinks
from sgflow.openai import (
    ChatStream,
    Plan,
    ResponsesStream,
    RunFold,
    RunRecord,
    answer_headers,
    batch_object,
    batch_output_line,
    chat_completion,
    file_object,
    model_list,
    openai_error,
    parse_batch_file,
    parse_chat_request,
    parse_model_name,
    parse_responses_request,
    plan_chat,
    plan_program_model,
    plan_responses,
    response_object,
)
from sgflow.programs import compile_program
from sgflow.programs.checker import check_program
from sgflow.programs.model import Program

Reply = str | tuple[str, str]  # text, or (text, finish type "stop" | "length")


@dataclass
class Call:
    prompt: str
    params: dict[str, Any]


@dataclass
class FakeEngine(DeltaSinks, BaseBackend):  # type: ignore[misc]
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
        self._init_sinks()
        self._lock = threading.Lock()

    def get_model_name(self) -> str:
        return "fake"

    def generate(self, s: Any, sampling_params: Any) -> tuple[str, dict[str, Any]]:
        params = sampling_params.to_srt_kwargs()
        with self._lock:
            self.calls.append(Call(s.text_, params))
            reply = self.reply(s.text_, params) if self.reply else self.replies.pop(0)
        text, finish = reply if isinstance(reply, tuple) else (reply, "stop")
        sink = self.sink_for(s)
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


def run_plan(plan: Plan, engine: FakeEngine, program: dict[str, Any] | None = None) -> Ran:
    """Run ``plan``'s program (or ``program``, the stored one a program model names) as a
    worker would (checked, compiled, executed on the fake engine), keeping its events in
    the store's form."""
    body = program if program is not None else plan.program
    assert isinstance(body, dict)
    problems = check_program(body)
    assert not problems, [p.to_dict() for p in problems]
    events: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()

    def on_event(kind: str, data: dict[str, Any]) -> None:
        with lock:
            events.append((kind, stored(kind, json.loads(json.dumps(data)))))

    ir = compile_program(Program.model_validate(body))
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
    """The OpenAI surface in front of the fake engine, as an ``httpx2`` handler: what phase
    2's routes will do, in a few lines per route. ``runs`` keeps each request's run;
    ``programs`` are the stored programs (``name@version`` → program body); ``edit``
    may rewrite a run's events before they are answered (a restart, say)."""

    engine: FakeEngine
    programs: dict[str, dict[str, Any]] = field(default_factory=dict)
    edit: Callable[[list[tuple[str, dict[str, Any]]]], list[tuple[str, dict[str, Any]]]] | None = (
        None
    )
    runs: list[Ran] = field(default_factory=list)
    requests: list[httpx2.Request] = field(default_factory=list)
    files: dict[str, tuple[str, str, bytes]] = field(
        default_factory=dict
    )  # id → name, purpose, bytes

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/v1")
        try:
            if path in ("/chat/completions", "/responses"):
                return self._answer(path, json.loads(request.content))
            if path.startswith("/models"):
                return self._models(path)
            if path.startswith("/files"):
                return self._files(request, path)
            if path.startswith("/batches"):
                return self._batches(request, path)
            raise SgflowError("route.not_found", f"no route {path}")
        except SgflowError as err:
            return _error(err)

    def plan(self, path: str, body: Any) -> tuple[Plan, dict[str, Any] | None]:
        req = (
            parse_chat_request(body)
            if path == "/chat/completions"
            else parse_responses_request(body)
        )
        model = parse_model_name(req.model)
        if model is not None:
            program = self.programs.get(model.ref)
            if program is None:
                raise SgflowError("program.not_found", f"no program {model.ref}", field="/model")
            return plan_program_model(req, model, inputs_schema=program["inputs"]), program
        plan = plan_chat(req) if path == "/chat/completions" else plan_responses(req)  # type: ignore[arg-type]
        return plan, None

    def run(self, path: str, body: Any) -> Ran:
        plan, program = self.plan(path, body)
        ran = run_plan(plan, self.engine, program)
        if self.edit is not None:
            ran.events = self.edit(ran.events)
        self.runs.append(ran)
        return ran

    def answer_body(self, ran: Ran) -> dict[str, Any]:
        fold = RunFold(ran.plan)
        for kind, data in ran.events:
            fold.feed(kind, data)
        if ran.plan.endpoint == "chat":
            return chat_completion(ran.plan, ran.record, fold)
        return response_object(ran.plan, ran.record, fold)

    def _answer(self, path: str, body: Any) -> httpx2.Response:
        ran = self.run(path, body)
        headers = answer_headers(ran.plan, ran.record.id)
        if ran.plan.stream:
            return httpx2.Response(
                200,
                content=self._stream(ran).encode(),
                headers={**headers, "content-type": "text/event-stream"},
            )
        return httpx2.Response(200, json=self.answer_body(ran), headers=headers)

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

    # -- models, files, batches ----------------------------------------------------------------

    def _models(self, path: str) -> httpx2.Response:
        programs = [
            (ref.split("@")[0], int(ref.split("@")[1]), 1_700_000_000.0) for ref in self.programs
        ]
        listing = model_list([("smollm2", 1_700_000_000.0)], programs, tenant="acme")
        if path == "/models":
            return httpx2.Response(200, json=listing)
        wanted = path.removeprefix("/models/")
        for model in listing["data"]:
            if model["id"] == wanted:
                return httpx2.Response(200, json=model)
        raise SgflowError("model.not_found", f"no model {wanted!r}", field="path:model")

    def _files(self, request: httpx2.Request, path: str) -> httpx2.Response:
        if request.method == "POST":
            name, purpose, content = _multipart(request)
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = (name, purpose, content)
            return httpx2.Response(
                200,
                json=file_object(
                    file_id,
                    size=len(content),
                    created_at=1_700_000_000.0,
                    filename=name,
                    purpose=purpose,
                ),
            )
        file_id = path.split("/")[2]
        return httpx2.Response(200, content=self.files[file_id][2])

    def _batches(self, request: httpx2.Request, path: str) -> httpx2.Response:
        body = json.loads(request.content)
        endpoint = body["endpoint"]
        _, _, content = self.files[body["input_file_id"]]
        parse = (
            parse_chat_request if endpoint == "/v1/chat/completions" else parse_responses_request
        )
        lines = parse_batch_file(content, endpoint=endpoint, parse_body=parse)
        out = []
        failed = 0
        for line in lines:
            try:
                ran = self.run(
                    endpoint.removeprefix("/v1"),
                    line.body.model_dump(by_alias=True, exclude_none=True),
                )
                out.append(
                    batch_output_line(
                        line.custom_id, ran.record.id, status_code=200, body=self.answer_body(ran)
                    )
                )
            except SgflowError as err:
                failed += 1
                answer = openai_error(err)
                out.append(
                    batch_output_line(
                        line.custom_id, "none", status_code=answer.status, body=answer.body
                    )
                )
        output_id = f"file-{len(self.files) + 1}"
        self.files[output_id] = (
            "output.jsonl",
            "batch_output",
            "".join(json.dumps(o) + "\n" for o in out).encode(),
        )
        view = {
            "id": "batch_1",
            "status": "completed",
            "request_counts": {
                "total": len(lines),
                "completed": len(lines) - failed,
                "failed": failed,
            },
            "created_at": 1_700_000_000.0,
            "in_progress_at": 1_700_000_000.0,
            "completed_at": 1_700_000_001.0,
            "errors": None,
        }
        return httpx2.Response(
            200,
            json=batch_object(
                view,
                endpoint=endpoint,
                input_file_id=body["input_file_id"],
                output_file_id=output_id,
                metadata=body.get("metadata"),
            ),
        )


def _multipart(request: httpx2.Request) -> tuple[str, str, bytes]:
    """The uploaded file's name, purpose and bytes from a multipart body."""
    from email.parser import BytesParser
    from email.policy import HTTP

    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    name, purpose, content = "", "", b""
    for part in message.iter_parts():
        field_name = part.get_param("name", header="content-disposition")
        if field_name == "purpose":
            purpose = part.get_content().strip()
        elif field_name == "file":
            name = part.get_filename() or ""
            content = part.get_payload(decode=True)
    return name, purpose, content
