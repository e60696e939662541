"""``ChatCompletion`` objects and ``chat.completion.chunk`` streams from a run of a plan.

The non-streamed answer (:func:`chat_completion`) comes from the finished run
(:func:`~sgflow.openai.outcome.final_choices`). The stream (:class:`ChatStream`) follows the
run's events and keeps every rule the SDK's stream accumulator relies on:

- the first chunk carries every choice, in index order, with ``role: "assistant"``, and the
  role is never sent again (the SDK concatenates every string it receives);
- a tool call's ``id``, ``type`` and ``function.name`` come once, in its first delta; every
  tool-call delta carries a ``function`` object;
- structured content is JSON from its first character, pieces of one JSON document;
- the last chunks carry each choice's ``finish_reason`` (``length`` for a cut-off, which the
  SDK raises as ``LengthFinishReasonError`` for a structured answer), then, with
  ``stream_options.include_usage``, one chunk with ``choices: []`` and the usage (any chunk
  after it would wipe the usage in the SDK's snapshot);
- a failure after the 200 is an SSE ``data: {"error": …}`` event (the SDK raises
  ``APIError``), then the stream ends; ``data: [DONE]`` ends a stream that completed.

Every object carries the run id: ``id`` is ``chatcmpl-<run id>``, a ``run_id`` key (the SDK
keeps unknown keys: ``completion.run_id``), and :func:`answer_headers` gives ``x-request-id``
(the SDK's ``completion._request_id``).
"""

from __future__ import annotations

import json
from typing import Any

from sgflow.errors import SgflowError
from sgflow.openai.errors import chat_stream_error
from sgflow.openai.outcome import Choice, Piece, RunFold, RunRecord, Usage, final_choices
from sgflow.openai.plan import Plan

__all__ = [
    "DONE",
    "ChatStream",
    "answer_headers",
    "call_id",
    "chat_completion",
    "sse",
    "usage_object",
]

DONE = "data: [DONE]\n\n"
_MAX_HEADER = 1000


def sse(payload: dict[str, Any]) -> str:
    """One SSE event carrying ``payload`` as JSON."""
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def call_id(run_id: str, choice: int, call: int) -> str:
    """The id of call ``call`` of choice ``choice``: stable, so the streamed and the
    non-streamed answers of a run agree."""
    return f"call_{run_id}_{choice}_{call}"


def usage_object(usage: Usage) -> dict[str, Any]:
    """Chat's ``usage``, with ``prompt_tokens_details.cached_tokens`` (the prompt tokens the
    engine's prefix cache served). Every generation's prompt counts: n choices, or a choice
    and an answer after a ``tool_choice: auto`` decision, count their (mostly cached)
    prompts each."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def answer_headers(plan: Plan, run_id: str) -> dict[str, str]:
    """Headers of an answer: ``x-request-id`` (the run id; the SDK exposes it as
    ``_request_id``) and, when the schema has keywords the grammar does not enforce while
    decoding, ``x-sgflow-validated-after`` naming them (they are validated after
    generation and the answer retried if needed)."""
    headers = {"x-request-id": run_id}
    if plan.validated:
        names = sorted({v.keyword for v in plan.validated})
        headers["x-sgflow-validated-after"] = ",".join(names)[:_MAX_HEADER]
    return headers


def _extras(plan: Plan, run_id: str) -> dict[str, Any]:
    extras: dict[str, Any] = {"run_id": run_id}
    if plan.validated:
        extras["validated_after"] = [v.to_dict() for v in plan.validated]
    return extras


def _message(choice: Choice, run_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.text, "refusal": None}
    if choice.calls:
        message["tool_calls"] = [
            {
                "id": call_id(run_id, choice.index, k),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            for k, (name, arguments) in enumerate(choice.calls)
        ]
    return message


def chat_completion(plan: Plan, record: RunRecord, fold: RunFold | None = None) -> dict[str, Any]:
    """The ``ChatCompletion`` of a finished run (``fold``: its events, when the route has
    them; they give a cut-off choice its partial text). Raises the run's error as
    :class:`SgflowError` when it failed otherwise than by a cut-off."""
    choices, usage = final_choices(plan, record, fold)
    return {
        "id": f"chatcmpl-{record.id}",
        "object": "chat.completion",
        "created": int(record.created_at),
        "model": plan.model,
        "choices": [
            {
                "index": c.index,
                "message": _message(c, record.id),
                "finish_reason": c.finish_reason,
                "logprobs": None,
            }
            for c in choices
        ],
        "usage": usage_object(usage),
        "system_fingerprint": None,
        **_extras(plan, record.id),
    }


class ChatStream:
    """The chunks of a streamed chat completion, from the run's events.

    :meth:`start` before any event, :meth:`feed` each event, :meth:`finish` with the
    finished run; each returns SSE text to send (maybe empty). After an error event,
    :attr:`closed` is True and nothing more is returned.
    """

    def __init__(self, plan: Plan, *, run_id: str, created: float) -> None:
        self.plan = plan
        self.run_id = run_id
        self.created = int(created)
        self.fold = RunFold(plan)
        self.closed = False
        self.started_calls: set[tuple[int, int]] = set()
        self.sent_text: set[int] = set()

    def _chunk(self, choices: list[dict[str, Any]], **more: Any) -> str:
        body: dict[str, Any] = {
            "id": f"chatcmpl-{self.run_id}",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.plan.model,
            "choices": choices,
            "run_id": self.run_id,
        }
        if self.plan.include_usage:
            body["usage"] = None
        body.update(more)
        return sse(body)

    def start(self) -> str:
        """The first chunk: every choice, with its role."""
        content = None if self.plan.mode == "calls" else ""
        return self._chunk(
            [
                {
                    "index": i,
                    "delta": {"role": "assistant", "content": content},
                    "finish_reason": None,
                    "logprobs": None,
                }
                for i in range(self.plan.n)
            ]
        )

    def _delta(self, piece: Piece) -> dict[str, Any] | None:
        if piece.kind == "text":
            return {"content": piece.text} if piece.text else None
        tool: dict[str, Any] = {"index": piece.call, "function": {"arguments": piece.text}}
        key = (piece.choice, piece.call)
        if key not in self.started_calls:
            self.started_calls.add(key)
            tool["id"] = call_id(self.run_id, piece.choice, piece.call)
            tool["type"] = "function"
            tool["function"]["name"] = piece.name or ""
        elif not piece.text:
            return None
        return {"tool_calls": [tool]}

    def feed(self, kind: str, data: dict[str, Any]) -> str:
        """The chunks one run event makes (an error event if the run restarted after part of
        an answer was sent)."""
        if self.closed:
            return ""
        out = [self._piece_chunk(piece) for piece in self.fold.feed(kind, data)]
        if self.fold.broken:
            out.append(self.error(restarted()))
        return "".join(out)

    def error(self, err: SgflowError) -> str:
        """The event that ends the stream with ``err``."""
        self.closed = True
        return sse(chat_stream_error(err))

    def finish(self, record: RunRecord | None = None) -> str:
        """The last chunks, from the finished run (``record``; without it, from the events
        alone): each choice's ``finish_reason``, the usage chunk if asked, ``[DONE]``; or
        the error event of a failed run."""
        if self.closed:
            return ""
        try:
            choices, usage = final_choices(self.plan, record, self.fold)
        except SgflowError as err:
            return self.error(err)
        out = [self._late(choices)]
        out.append(
            self._chunk(
                [
                    {
                        "index": c.index,
                        "delta": {},
                        "finish_reason": c.finish_reason,
                        "logprobs": None,
                    }
                    for c in choices
                ]
            )
        )
        if self.plan.include_usage:
            out.append(self._chunk([], usage=usage_object(usage)))
        self.closed = True
        return "".join(out) + DONE

    def _late(self, choices: list[Choice]) -> str:
        """What the events did not stream: the answer of a program run as a model, or of
        a run followed without its events (a cut-off answer's partial text is not sent
        late: it was either streamed live or is no answer)."""
        out = []
        for c in choices:
            pieces = []
            if c.text and c.index not in self.sent_text and c.finish_reason != "length":
                pieces.append(Piece(c.index, "text", c.text))
            for k, (name, arguments) in enumerate(c.calls):
                if (c.index, k) not in self.started_calls:
                    pieces += [
                        Piece(c.index, "call", "", k, name),
                        Piece(c.index, "call", arguments, k),
                    ]
            out += [self._piece_chunk(p) for p in pieces]
        return "".join(out)

    def _piece_chunk(self, piece: Piece) -> str:
        delta = self._delta(piece)
        if delta is None:
            return ""
        if piece.kind == "text":
            self.sent_text.add(piece.choice)
        return self._chunk(
            [{"index": piece.choice, "delta": delta, "finish_reason": None, "logprobs": None}]
        )


def restarted() -> SgflowError:
    """The error that ends a stream whose run restarted after part of it was sent."""
    return SgflowError(
        "stream.restarted",
        "the run was restarted (a worker was lost or the engine failed) after part of the "
        "answer was streamed; the answer would not be one generation",
        hint="send the request again",
    )
