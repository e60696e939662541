"""One sequence in flight: its prompt, sampling state, output text and logprobs."""

from __future__ import annotations

import codecs
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sgflow.engine.constraints import GrammarState
from sgflow.engine.protocol import SeqSpec, finish_abort, finish_length, finish_stop
from sgflow.engine.sampling import Sampler

__all__ = ["Sequence", "Update"]


@dataclass(frozen=True)
class Update:
    """What the HTTP side learns about a sequence: cumulative text and meta_info."""

    index: int
    text: str
    meta_info: dict[str, Any]
    finished: bool


Sink = Callable[[Update], None]
Piece = Callable[[int], bytes]


@dataclass
class Sequence:
    spec: SeqSpec
    prompt: list[int]
    sampler: Sampler
    grammar: GrammarState | None
    end_ids: frozenset[int]
    sink: Sink
    stream: bool = False
    rid: str = field(default_factory=lambda: uuid.uuid4().hex)
    # scheduler state
    slot: int = -1
    cached: int = 0
    n_in_kv: int = 0
    pending: int | None = None  # sampled, not decoded yet
    forced: list[int] = field(default_factory=list)  # jumped forward after it, not decoded
    output: list[int] = field(default_factory=list)
    text: str = ""
    finish: dict[str, Any] | None = None
    cancelled: bool = False
    created: float = field(default_factory=time.perf_counter)
    admitted_at: float | None = None  # given a slot (perf_counter)
    first_token_at: float | None = None
    # logprobs, by absolute prompt position for input ones
    input_lp: dict[int, float | None] = field(default_factory=dict)
    input_top: dict[int, list[tuple[float, int]]] = field(default_factory=dict)
    output_lp: list[float] = field(default_factory=list)
    output_top: list[list[tuple[float, int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.spec.rid:
            self.rid = self.spec.rid
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stops = self.spec.params.stop_strings()
        self._max_stop = max((len(s) for s in self._stops), default=0)

    # -- derived ----------------------------------------------------------------------------

    @property
    def max_new_tokens(self) -> int:
        value = self.spec.params.max_new_tokens
        return 128 if value is None else value

    @property
    def logprob_start(self) -> int:
        """First prompt position whose logprob is returned (SGLang: -1 means the last)."""
        start = self.spec.logprob_start_len
        last = len(self.prompt) - 1
        return last if start < 0 else min(start, last)

    @property
    def max_reuse(self) -> int:
        """Cached tokens this sequence may take: logits it needs must be recomputed."""
        limit = len(self.prompt) - 1
        if self.spec.return_logprob:
            limit = min(limit, self.logprob_start - 1)
        return max(0, limit)

    def wants_logits(self, pos: int) -> bool:
        last = len(self.prompt) - 1
        if pos == last:
            return True
        return self.spec.return_logprob and self.logprob_start - 1 <= pos < last

    @property
    def prefilling(self) -> bool:
        return self.n_in_kv < len(self.prompt)

    # -- results ----------------------------------------------------------------------------

    def add_text(self, data: bytes) -> None:
        self.text += self._decoder.decode(data)
        if not self._stops:
            return
        window = self.text[-(self._max_stop + len(data) + 8) :]
        offset = len(self.text) - len(window)
        hits = [(window.find(s), s) for s in self._stops if s in window]
        if hits:
            pos, stop = min(hits)
            end = offset + pos + (len(stop) if self.spec.params.no_stop_trim else 0)
            self.text = self.text[:end]
            self.finish = finish_stop(stop)

    def close_text(self) -> None:
        if (
            self.finish is None
            or self.finish.get("type") != "stop"
            or isinstance(self.finish.get("matched"), int)
        ):
            self.text += self._decoder.decode(b"", final=True)

    def finish_with_length(self) -> None:
        self.finish = finish_length(len(self.output))

    def abort(self, message: str, *, code: str) -> None:
        """End without finishing; ``code`` is a registered error code."""
        self.finish = finish_abort(message, code)

    def meta_info(self, piece: Piece | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": self.rid,
            "prompt_tokens": len(self.prompt),
            "completion_tokens": len(self.output),
            "cached_tokens": self.cached,
            "finish_reason": self.finish,
            "e2e_latency": round(time.perf_counter() - self.created, 6),
        }
        if self.spec.return_logprob:
            with_text = piece if self.spec.return_text_in_logprobs else None
            start = self.logprob_start
            meta["input_token_logprobs"] = [
                _entry(self.input_lp.get(p), self.prompt[p], with_text)
                for p in range(start, len(self.prompt))
            ]
            meta["output_token_logprobs"] = [
                _entry(lp, tok, with_text)
                for lp, tok in zip(self.output_lp, self.output, strict=False)
            ]
            if self.spec.top_logprobs_num:
                meta["input_top_logprobs"] = [
                    [_entry(lp, t, with_text) for lp, t in self.input_top.get(p, [])] or None
                    for p in range(start, len(self.prompt))
                ]
                meta["output_top_logprobs"] = [
                    [_entry(lp, t, with_text) for lp, t in top] for top in self.output_top
                ]
        return meta


def _entry(lp: float | None, token: int, piece: Piece | None) -> list[Any]:
    text = piece(token).decode("utf-8", "replace") if piece else None
    return [lp, token, text]
