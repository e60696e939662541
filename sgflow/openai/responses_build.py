"""``Response`` objects and Responses event streams from a run of a plan.

The object (:func:`response_object`) repeats the request's settings (``tools``,
``tool_choice``, ``text``, ``instructions``…: the SDK's type requires several) and carries
the answer as output items: a ``message`` with one ``output_text``, or ``function_call``
items. A cut-off answer makes the response ``incomplete`` (``incomplete_details.reason:
max_output_tokens``): a worded text keeps its partial message (``status: incomplete``), but
a cut-off JSON answer or call is left out of ``output``. ``responses.parse`` parses every
``output_text`` with the caller's model and has no finish check (unlike chat's ``parse``),
so partial JSON there would raise a validation error from inside the SDK; without it,
``output_parsed`` is None and ``status`` says why.

The stream (:class:`ResponsesStream`) follows the order the SDK's state machine enforces:
``response.created`` → ``response.in_progress`` → per item ``output_item.added`` →
(``content_part.added`` → ``output_text.delta``… → ``output_text.done`` →
``content_part.done``) or ``function_call_arguments.delta``… → ``…arguments.done`` →
``output_item.done``; then ``response.completed`` (or ``response.incomplete``), every
lifecycle event with the same response id and numbered ``sequence_number`` from 0. A cut-off
JSON item gets no ``done`` events (``output_text.done`` is where the SDK parses the text).
A failure after the 200 is an ``error`` event followed by ``response.failed``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sgflow.errors import SgflowError
from sgflow.openai.chat_build import call_id, restarted
from sgflow.openai.errors import responses_stream_error
from sgflow.openai.outcome import Choice, Piece, RunFold, RunRecord, Usage, final_choices
from sgflow.openai.plan import Plan

__all__ = ["ResponsesStream", "response_object", "response_usage"]


def response_usage(usage: Usage) -> dict[str, Any]:
    """Responses' ``usage`` (every field the SDK's type requires)."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _base(plan: Plan, run_id: str, created: float, status: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"resp_{run_id}",
        "object": "response",
        "created_at": int(created),
        "model": plan.model,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "output": [],
        "usage": None,
        "run_id": run_id,
    }
    body.update(plan.echo)
    if plan.validated:
        body["validated_after"] = [v.to_dict() for v in plan.validated]
    return body


def _message(run_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": f"msg_{run_id}",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _call(run_id: str, k: int, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": f"fc_{run_id}_{k}",
        "type": "function_call",
        "call_id": call_id(run_id, 0, k),
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _items(plan: Plan, run_id: str, choice: Choice) -> list[dict[str, Any]]:
    """The output items of the (only) choice; a cut-off JSON answer or call has none."""
    if choice.calls:
        return [
            _call(run_id, k, name, arguments, "completed")
            for k, (name, arguments) in enumerate(choice.calls)
        ]
    if choice.text is None:
        return []
    if choice.finish_reason == "length":
        if plan.answer_is_json:
            return []
        return [_message(run_id, choice.text, "incomplete")]
    return [_message(run_id, choice.text, "completed")]


def _final(
    plan: Plan, run_id: str, created: float, choices: list[Choice], usage: Usage
) -> dict[str, Any]:
    choice = choices[0]
    cut = choice.finish_reason == "length"
    body = _base(plan, run_id, created, "incomplete" if cut else "completed")
    body["output"] = _items(plan, run_id, choice)
    body["usage"] = response_usage(usage)
    if cut:
        body["incomplete_details"] = {"reason": "max_output_tokens"}
    else:
        body["completed_at"] = int(time.time())
    return body


def response_object(plan: Plan, record: RunRecord, fold: RunFold | None = None) -> dict[str, Any]:
    """The ``Response`` of a finished run; raises the run's error as :class:`SgflowError`
    when it failed otherwise than by a cut-off."""
    choices, usage = final_choices(plan, record, fold)
    return _final(plan, record.id, record.created_at, choices, usage)


class ResponsesStream:
    """The events of a streamed response, from the run's events: :meth:`start`, then
    :meth:`feed` per run event, then :meth:`finish` with the finished run; each returns SSE
    text (maybe empty). After an error :attr:`closed` is True."""

    def __init__(self, plan: Plan, *, run_id: str, created: float) -> None:
        self.plan = plan
        self.run_id = run_id
        self.created = created
        self.fold = RunFold(plan)
        self.closed = False
        self.sequence = 0
        self.message_index: int | None = None  # output index of the open message
        self.text = ""
        self.calls: dict[int, tuple[int, str, str]] = {}  # call → (output index, name, args)
        self.next_index = 0

    def _event(self, kind: str, **fields: Any) -> str:
        body = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"

    def start(self) -> str:
        """``response.created`` and ``response.in_progress``."""
        base = _base(self.plan, self.run_id, self.created, "in_progress")
        return self._event("response.created", response=base) + self._event(
            "response.in_progress", response=base
        )

    def _piece(self, piece: Piece) -> str:
        if piece.kind == "text":
            if not piece.text:
                return ""
            out = ""
            if self.message_index is None:
                self.message_index = self.next_index
                self.next_index += 1
                item = _message(self.run_id, "", "in_progress")
                item["content"] = []
                out += self._event(
                    "response.output_item.added", output_index=self.message_index, item=item
                )
                out += self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self.message_index,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                )
            self.text += piece.text
            return out + self._event(
                "response.output_text.delta",
                item_id=f"msg_{self.run_id}",
                output_index=self.message_index,
                content_index=0,
                delta=piece.text,
                logprobs=[],
            )
        out = ""
        if piece.call not in self.calls:
            index = self.next_index
            self.next_index += 1
            self.calls[piece.call] = (index, piece.name or "", "")
            out += self._event(
                "response.output_item.added",
                output_index=index,
                item=_call(self.run_id, piece.call, piece.name or "", "", "in_progress"),
            )
        index, name, arguments = self.calls[piece.call]
        if not piece.text:
            return out
        self.calls[piece.call] = (index, name, arguments + piece.text)
        return out + self._event(
            "response.function_call_arguments.delta",
            item_id=f"fc_{self.run_id}_{piece.call}",
            output_index=index,
            delta=piece.text,
        )

    def feed(self, kind: str, data: dict[str, Any]) -> str:
        """The events one run event makes (an error if the run restarted after part of the
        answer was sent)."""
        if self.closed:
            return ""
        out = "".join(self._piece(p) for p in self.fold.feed(kind, data))
        if self.fold.broken:
            out += self.error(restarted())
        return out

    def error(self, err: SgflowError) -> str:
        """``error`` then ``response.failed``: the end of the stream."""
        self.closed = True
        failed = _base(self.plan, self.run_id, self.created, "failed")
        failed["error"] = {"code": "server_error", "message": f"{err.code}: {err.message}"}
        event = responses_stream_error(err, sequence_number=self.sequence)
        self.sequence += 1
        line = f"data: {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n"
        return line + self._event("response.failed", response=failed)

    def finish(self, record: RunRecord | None = None) -> str:
        """The ``done`` events of every item, then ``response.completed`` (or
        ``response.incomplete``); or the error of a failed run."""
        if self.closed:
            return ""
        try:
            choices, usage = final_choices(self.plan, record, self.fold)
        except SgflowError as err:
            return self.error(err)
        choice = choices[0]
        out = [self._late(choice)]
        cut = choice.finish_reason == "length"
        if self.message_index is not None and not (cut and self.plan.answer_is_json):
            out.append(self._message_done("incomplete" if cut else "completed"))
        for k, (index, name, arguments) in sorted(self.calls.items()):
            if cut:
                break  # a cut-off call is no call: never `done`
            item = _call(self.run_id, k, name, arguments, "completed")
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=arguments,
                    name=name,
                )
            )
            out.append(self._event("response.output_item.done", output_index=index, item=item))
        final = _final(self.plan, self.run_id, self.created, choices, usage)
        out.append(self._event(f"response.{final['status']}", response=final))
        self.closed = True
        return "".join(out)

    def _late(self, choice: Choice) -> str:
        """What the events did not stream (a program's output; a run without events)."""
        pieces = []
        if choice.text and self.message_index is None and choice.finish_reason != "length":
            pieces.append(Piece(0, "text", choice.text))
        for k, (name, arguments) in enumerate(choice.calls):
            if k not in self.calls:
                pieces += [Piece(0, "call", "", k, name), Piece(0, "call", arguments, k)]
        return "".join(self._piece(p) for p in pieces)

    def _message_done(self, status: str) -> str:
        assert self.message_index is not None
        item = _message(self.run_id, self.text, status)
        part = item["content"][0]
        where = {"item_id": item["id"], "output_index": self.message_index, "content_index": 0}
        return (
            self._event("response.output_text.done", **where, text=self.text, logprobs=[])
            + self._event("response.content_part.done", **where, part=part)
            + self._event("response.output_item.done", output_index=self.message_index, item=item)
        )
