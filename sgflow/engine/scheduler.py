"""The engine loop: continuous batching with chunked prefill over one llama.cpp context.

One thread owns the model. Each iteration it admits waiting sequences in arrival order
(each gets a KV slot and whatever prefix the cache already holds), then decodes one batch
holding one token for every sequence that is generating and, with the room left, the next
chunk of prompt for sequences still prefilling. So a long prompt never stalls the streams
already running, and every request advances in turn. A cancelled sequence (its client went
away) is dropped before the next batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from sgflow.engine.errors import Overloaded
from sgflow.engine.model_api import DecodeFailed, Model, Part
from sgflow.engine.prefix_cache import PrefixCache
from sgflow.engine.sampling import log_softmax, top_logprobs
from sgflow.engine.sequence import Sequence, Update
from sgflow.engine.text_align import SlotText, align_prompt

__all__ = ["Scheduler", "SchedulerStats"]

log = logging.getLogger("sgflow.engine.scheduler")

_RETRY_AFTER_S = "1"
# characters of forced text split per forced token a step may take (longer than any token)
_FORCED_CHARS_PER_TOKEN = 64


@dataclass
class SchedulerStats:
    waiting: int
    max_waiting: int
    running: int
    running_tokens: int
    cache_used_tokens: int
    cache_capacity_tokens: int
    cache_hit_tokens: int
    evictions: int
    generated_tokens: int
    forced_tokens: int  # of generated_tokens, those a grammar forced (jump-forward)
    masked_tokens: int  # tokens sampled under a grammar's mask
    mask_seconds: float  # filling and applying those masks
    decode_seconds: float  # the model's decodes
    prompt_tokens: int
    last_gen_throughput: float


class Scheduler:
    def __init__(
        self, model: Model, *, max_running: int, max_queued: int = 1024, jump_forward: bool = True
    ) -> None:
        self.model = model
        self.cache = PrefixCache(model, n_slots=model.n_seq, capacity=model.n_ctx)
        self.max_running = max(1, min(max_running, model.n_seq))
        self.max_queued = max(1, max_queued)
        self.jump_forward = jump_forward
        self._forced = 0  # output tokens taken by jumping forward, never sampled
        self._masked = 0  # tokens sampled under a grammar mask
        self._mask_s = 0.0  # time filling and applying those masks
        self._decode_s = 0.0  # time in the model's decode
        self._queued = 0  # sequences submitted and not yet admitted, cancelled or ended
        self._queue_lock = threading.Lock()
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="engine-scheduler", daemon=True)
        self._generated = 0
        self._prompted = 0
        self._throughput = 0.0
        self._special_piece_cache: dict[int, bytes] = {}
        self._ready = threading.Event()
        self._texts: dict[int, SlotText] = {}
        self._eog = np.array(sorted(model.info.eog_ids), dtype=np.int64)
        self._eog_set = frozenset(model.info.eog_ids)

    # -- API for other threads ------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(timeout=120):
            raise RuntimeError("the engine thread did not start")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the loop after its current batch; True once its thread has ended (False if
        it is still decoding after ``timeout`` s: then the model must not be freed)."""
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        return not self._thread.is_alive()

    def check_room(self, n: int = 1) -> None:
        """Raise :class:`Overloaded` (503, ``Retry-After``) unless ``n`` more sequences may
        wait. The queue holds at most ``max_queued`` sequences; a request larger than that
        is taken only when nothing waits, so it is never refused forever."""
        queued = self._queued
        if queued and queued + n > self.max_queued:
            raise Overloaded(
                f"the engine's queue holds {queued} waiting sequences; {n} more would pass "
                f"its limit of {self.max_queued}",
                limit=self.max_queued,
                hint="retry after a while, send fewer sequences (n, list prompts), or raise "
                "--max-queued",
                headers={"Retry-After": _RETRY_AFTER_S},
            )

    def submit(self, seqs: list[Sequence]) -> None:
        """Queue ``seqs``; raises :class:`Overloaded` when the queue is full (then nothing
        is queued)."""
        with self._queue_lock:
            self.check_room(len(seqs))
            self._queued += len(seqs)
        for seq in seqs:
            self._inbox.put(seq)
        self._wake.set()

    def cancel(self, seqs: list[Sequence]) -> None:
        for seq in seqs:
            seq.cancelled = True
        self._wake.set()

    def flush(self) -> bool:
        """Empty the prefix cache; answered by the loop thread, False while busy."""
        done = threading.Event()
        result: list[bool] = []
        self._inbox.put(("flush", done, result))
        self._wake.set()
        done.wait(timeout=30)
        return bool(result and result[0])

    def stats(self) -> SchedulerStats:
        running = list(self._running)
        return SchedulerStats(
            waiting=self._queued,
            max_waiting=self.max_queued,
            running=len(running),
            running_tokens=sum(len(s.prompt) + len(s.output) for s in running),
            cache_used_tokens=self.cache.used_cells(),
            cache_capacity_tokens=self.cache.capacity,
            cache_hit_tokens=self.cache.hits_tokens,
            evictions=self.cache.evictions,
            generated_tokens=self._generated,
            forced_tokens=self._forced,
            masked_tokens=self._masked,
            mask_seconds=round(self._mask_s, 6),
            decode_seconds=round(self._decode_s, 6),
            prompt_tokens=self._prompted,
            last_gen_throughput=round(self._throughput, 2),
        )

    # -- loop -----------------------------------------------------------------------------

    def _loop(self) -> None:
        # every llama.cpp computation happens on this thread, the first one included
        self.model.warm_up()
        self._ready.set()
        while not self._stop:
            if not self.run_once():
                self._wake.wait(timeout=0.5)
                self._wake.clear()
        self._drain_inbox()
        self._dequeued(len(self._waiting))
        for seq in [*self._running, *self._waiting]:
            seq.abort("engine shutting down", code="request.aborted")
            self._emit(seq)

    def run_once(self) -> bool:
        """One turn of the loop: take new work, drop cancelled sequences, admit, decode one
        batch. False when there was nothing to decode. Called by the loop thread only (tests
        call it themselves instead of :meth:`start`)."""
        self._drain_inbox()
        self._drop_cancelled()
        self._admit()
        if not self._running:
            return False
        try:
            self._step()
        except Exception as exc:  # never let one bad batch take the engine down
            log.exception("engine step failed")
            for seq in list(self._running):
                seq.abort(f"engine error: {exc}", code="engine.internal")
                self._retire(seq, drop_kv=True)
        return True

    def _drain_inbox(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Sequence):
                self._waiting.append(item)
            else:
                _, done, result = item
                result.append(self.cache.flush())
                done.set()

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self._waiting if s.cancelled]:
            self._waiting.remove(seq)
            self._dequeued(1)
            seq.abort("client disconnected", code="request.aborted")
        for seq in [s for s in self._running if s.cancelled]:
            seq.abort("client disconnected", code="request.aborted")
            self._retire(seq, emit=False)

    def _admit(self) -> None:
        while self._waiting and len(self._running) < self.max_running:
            seq = self._waiting[0]
            src, match = self.cache.longest_match(seq.prompt)
            if seq.spec.text is not None and not seq.spec.return_logprob:
                aligned = align_prompt(
                    seq.spec.text,
                    [self._slot_text(i) for i in range(self.cache.n_slots)],
                    tokenize=self.model.tokenize,
                    min_gain=8,
                    baseline=match,
                )
                # a non-canonical tokenization may be a little longer; never much
                if aligned is not None and len(aligned) <= len(seq.prompt) + 16:
                    seq.prompt = aligned
                    src, match = self.cache.longest_match(seq.prompt)
            need = len(seq.prompt) - min(match, seq.max_reuse) + seq.max_new_tokens
            reserved = sum(len(s.prompt) + s.max_new_tokens - s.n_in_kv for s in self._running)
            if not self.cache.make_room(need + reserved, protect=src) and self._running:
                return  # wait for running sequences to finish and free their cells
            acquired = self.cache.acquire(seq.prompt, max_reuse=seq.max_reuse)
            if acquired is None:
                return
            self._waiting.popleft()
            self._dequeued(1)
            seq.slot = acquired.slot
            seq.admitted_at = time.perf_counter()
            seq.cached = acquired.reused
            seq.n_in_kv = acquired.reused
            self._prompted += len(seq.prompt)
            self._running.append(seq)

    def _dequeued(self, n: int) -> None:
        with self._queue_lock:
            self._queued -= n

    def _step(self) -> None:
        budget = self.model.n_batch
        parts: list[Part] = []
        owners: list[tuple[Sequence, str]] = []
        for seq in self._running:
            if not seq.prefilling and seq.pending is not None:
                tokens = [seq.pending, *seq.forced]  # a jump forward decodes in one step
                parts.append((seq.slot, tokens, seq.n_in_kv, [len(tokens) - 1]))
                owners.append((seq, "decode"))
                budget -= len(tokens)
        for seq in self._running:
            if budget <= 0:
                break
            if seq.prefilling:
                chunk = seq.prompt[seq.n_in_kv : seq.n_in_kv + budget]
                want = [k for k in range(len(chunk)) if seq.wants_logits(seq.n_in_kv + k)]
                parts.append((seq.slot, chunk, seq.n_in_kv, want))
                owners.append((seq, "prefill"))
                budget -= len(chunk)
        started = time.perf_counter()
        decoded = sum(1 for _, kind in owners if kind == "decode")
        if not self._decode(parts, owners):
            return
        elapsed = time.perf_counter() - started
        if decoded and elapsed > 0:
            rate = decoded / elapsed
            self._throughput = rate if not self._throughput else 0.9 * self._throughput + 0.1 * rate

    def _decode(self, parts: list[Part], owners: list[tuple[Sequence, str]]) -> bool:
        """Decode ``parts`` and take each sequence's result. A failure is its owner's
        alone: a full KV cache (after evicting idle prefixes) ends the newest part's
        sequence, any other failure is narrowed down by decoding the parts one by one, and a
        sequence whose own result cannot be taken ends with ``engine.internal``. False when
        the batch as a whole did not decode (nothing to measure)."""
        while True:
            try:
                started = time.perf_counter()
                rows = self.model.decode(parts)
                self._decode_s += time.perf_counter() - started
                break
            except DecodeFailed as exc:
                if exc.code == 1 and self.cache.evict_one():
                    continue  # no contiguous KV room: give up an idle cached prefix, retry
                if exc.code == 1:
                    victim = owners[-1][0]
                    log.warning("KV cache exhausted; aborting %s", victim.rid)
                    self._fail(
                        victim,
                        "the engine's KV cache is full; retry later or raise --cache-mb",
                        code="engine.overloaded",
                    )
                elif len(parts) == 1:
                    log.error("llama_decode failed (code %d) for %s", exc.code, owners[0][0].rid)
                    self._fail(owners[0][0], f"the model failed to decode ({exc})")
                else:
                    for part, owner in zip(parts, owners, strict=True):
                        self._decode([part], [owner])
                return False
        for owner, part, part_rows in zip(owners, parts, rows, strict=True):
            self._take(owner, part, part_rows)
        return True

    def _fail(self, seq: Sequence, message: str, *, code: str = "engine.internal") -> None:
        seq.abort(message, code=code)
        self._retire(seq, drop_kv=True)

    def _take(self, owner: tuple[Sequence, str], part: Part, part_rows: dict[int, int]) -> None:
        """One sequence's share of a decoded batch: its KV grew by its tokens; sample its
        next token or record its prompt's logprobs. What goes wrong here ends only it."""
        seq, kind = owner
        if seq.finish is not None:
            return
        try:
            tokens = part[1]
            self.cache.extend(seq.slot, tokens)
            seq.n_in_kv += len(tokens)
            if kind == "decode":
                seq.forced = []
                self._sample(seq, self.model.logits(part_rows[len(tokens) - 1]))
                return
            last_row = None
            for k, row in sorted(part_rows.items()):
                pos = part[2] + k
                if pos == len(seq.prompt) - 1:
                    last_row = row
                if seq.spec.return_logprob and pos + 1 < len(seq.prompt):
                    self._record_input_logprob(seq, pos + 1, self.model.logits(row))
            if not seq.prefilling:
                if seq.spec.return_logprob and seq.logprob_start == 0:
                    seq.input_lp[0] = None
                if seq.max_new_tokens == 0:
                    seq.finish_with_length()
                    self._retire(seq)
                elif last_row is not None:
                    self._sample(seq, self.model.logits(last_row))
        except Exception as exc:
            log.exception("sequence %s failed after its decode", seq.rid)
            if seq in self._running:
                self._fail(seq, f"engine error: {exc}")

    def _sample(self, seq: Sequence, logits: Any) -> None:
        if seq.first_token_at is None:
            seq.first_token_at = time.perf_counter()
        if seq.grammar is not None:
            started = time.perf_counter()
            allowed = seq.grammar.allowed()
            processed = seq.sampler.process(logits, n_generated=len(seq.output), allowed=allowed)
            self._mask_s += time.perf_counter() - started
            self._masked += 1
        else:
            allowed = None
            processed = seq.sampler.process(logits, n_generated=len(seq.output), allowed=None)
        token = seq.sampler.choose(processed)
        if token is None:
            if allowed is not None and allowed[self._eog].any():
                # the grammar is complete and end-of-sequence is masked (ignore_eos or
                # min_new_tokens): the constrained value is finished.
                seq.finish = {"type": "stop", "matched": self.model.info.eos}
            elif allowed is not None:
                seq.abort(
                    "the grammar reached a dead end: no token can continue it and it is not "
                    "complete, so the text is not a value of the constraint",
                    code="grammar.dead_end",
                )
            else:
                seq.abort("no token is allowed by the sampling parameters", code="engine.internal")
            self._retire(seq)
            return
        if seq.spec.return_logprob:
            lps = log_softmax(logits)
            seq.output_lp.append(float(lps[token]))
            if seq.spec.top_logprobs_num:
                seq.output_top.append(top_logprobs(lps, seq.spec.top_logprobs_num))
        if seq.grammar is not None and not seq.grammar.accept(token):
            seq.abort(f"internal error: grammar rejected token {token}", code="engine.internal")
            self._retire(seq)
            return
        if seq.grammar is not None and token in self._eog_set and not seq.grammar.is_terminated():
            # end-of-sequence is only a clean stop where the grammar accepts the text
            seq.abort(
                "the generation ended where the grammar does not accept the text",
                code="grammar.dead_end",
            )
            self._retire(seq)
            return
        self._append(seq, token)
        if seq.finish is None and seq.grammar is not None and self.jump_forward:
            token = self._jump_forward(seq, token)
        if seq.finish is not None:
            self._retire(seq)
            return
        seq.pending = token
        if seq.stream:
            self._emit(seq)

    def _append(self, seq: Sequence, token: int) -> None:
        """``token`` joins the output: counted, penalised, spelled, checked for the end."""
        seq.output.append(token)
        seq.sampler.observe(token)
        self._generated += 1
        if token in seq.end_ids:
            seq.finish = {"type": "stop", "matched": token}
            return
        seq.add_text(self._piece(token, special=not seq.spec.params.skip_special_tokens))
        if seq.finish is None and len(seq.output) >= seq.max_new_tokens:
            seq.finish_with_length()

    def _jump_forward(self, seq: Sequence, sampled: int) -> int:
        """Where the grammar allows only one continuation (a key, punctuation, an enum's
        tail), take it without sampling: its tokens join the output now and are decoded
        with the sampled token in one step (SGLang's jump-forward). Returns the token to
        decode first: ``sampled``, or the first of a new split of it and the forced text.

        So that the model reads the split it would have made itself, the forced text is
        tokenized together with the sampled token's text (when that split starts otherwise,
        the sampled token is rolled back out of the grammar and replaced: the same bytes),
        and the split's last token is held back, to be sampled, since it may merge with
        what follows (``"`` then ``:`` is one token, ``":``). Each forced token is accepted
        by the grammar, or the jump stops there. Not with logprobs (every output token then
        needs its own), nor past the length, nor past ``n_batch / max_running`` tokens (every
        running sequence's next decode must fit one batch)."""
        assert seq.grammar is not None
        if seq.spec.return_logprob:
            return sampled
        text = seq.grammar.forced_text()
        if not text:
            return sampled
        # every running sequence's decode part must fit one batch of n_batch tokens
        cap = max(0, self.model.n_batch // self.max_running - 1)
        # A step takes at most cap + 1 tokens, so only the head of a long literal is split:
        # tokenizing all of a 4,000-character forced text at every step was quadratic.
        text = text[: (cap + 2) * _FORCED_CHARS_PER_TOKEN]
        piece = self._piece(sampled, special=False)
        split = self._split_with(piece, text)
        if split is None:
            split = [sampled, *self._text_tokens(text)]
        take = split[:-1][: cap + 1]
        room = seq.max_new_tokens - len(seq.output)
        if len(take) < 2 or len(take) - 1 > room:
            return sampled
        if take[0] != sampled:
            return self._replace(seq, sampled, piece, take)
        for tok in take[1:]:
            if tok in self._eog_set or not seq.grammar.accept(tok):
                break
            seq.forced.append(tok)
            self._forced += 1
            self._append(seq, tok)
            if seq.finish is not None:
                break
        return sampled

    def _replace(self, seq: Sequence, sampled: int, piece: bytes, take: list[int]) -> int:
        """Put ``take`` (a split starting with the sampled token's bytes, and more) in the
        place of the sampled token; unchanged if the grammar refuses it."""
        assert seq.grammar is not None
        spelled = b"".join(self._piece(t, special=False) for t in take)
        if not spelled.startswith(piece):
            return sampled
        seq.grammar.rollback(1)
        accepted = 0
        for tok in take:
            if tok in self._eog_set or not seq.grammar.accept(tok):
                break
            accepted += 1
        if accepted < len(take):  # back to the sampled token alone
            seq.grammar.rollback(accepted)
            seq.grammar.accept(sampled)
            return sampled
        seq.output.pop()
        seq.sampler.forget(sampled)
        for tok in take:
            seq.output.append(tok)
            seq.sampler.observe(tok)
        self._generated += len(take) - 1
        self._forced += len(take) - 1
        seq.forced = take[1:]
        seq.add_text(spelled[len(piece) :])
        if seq.finish is None and len(seq.output) >= seq.max_new_tokens:
            seq.finish_with_length()
        return take[0]

    def _split_with(self, piece: bytes, text: str) -> list[int] | None:
        """How the tokenizer splits ``piece`` (the sampled token's bytes) followed by the
        forced ``text``, when that split spells exactly those bytes (else None)."""
        try:
            head = piece.decode("utf-8")
        except UnicodeDecodeError:
            return None
        ids = self._text_tokens(head + text)
        if b"".join(self._piece(t, special=False) for t in ids) != piece + text.encode():
            return None
        return ids

    def _text_tokens(self, text: str) -> list[int]:
        try:
            ids = self.model.tokenize(text)
        except ValueError:  # text the vocabulary cannot spell: no jump, the grammar decides
            return []
        info = self.model.info
        return ids[1:] if info.add_bos and ids and ids[0] == info.bos else ids

    def _record_input_logprob(self, seq: Sequence, pos: int, logits: Any) -> None:
        lps = log_softmax(logits)
        seq.input_lp[pos] = float(lps[seq.prompt[pos]])
        if seq.spec.top_logprobs_num:
            seq.input_top[pos] = top_logprobs(lps, seq.spec.top_logprobs_num)

    def _piece(self, token: int, *, special: bool) -> bytes:
        if not special:
            return self.model.piece(token)
        cached = self._special_piece_cache.get(token)
        if cached is None:
            cached = self._special_piece_cache[token] = self.model.piece(token, special=True)
        return cached

    def _slot_text(self, slot: int) -> SlotText:
        """The slot's tokens and their bytes, extended incrementally as the slot grows."""
        tokens = self.cache.tokens(slot)
        cached = self._texts.get(slot)
        if cached is None or cached.tokens is not tokens or len(cached.ends) > len(tokens):
            cached = self._texts[slot] = SlotText(tokens)
        return cached.grow(self.piece_with_special)

    def piece_with_special(self, token: int) -> bytes:
        return self._piece(token, special=True)

    def _retire(self, seq: Sequence, *, drop_kv: bool = False, emit: bool = True) -> None:
        if seq in self._running:
            self._running.remove(seq)
        if seq.slot >= 0:
            if drop_kv:
                self.cache.drop(seq.slot)
            self.cache.release(seq.slot)
        seq.close_text()
        if emit:
            self._emit(seq)

    def _emit(self, seq: Sequence) -> None:
        finished = seq.finish is not None
        seq.sink(
            Update(
                index=seq.spec.index,
                text=seq.text,
                meta_info=seq.meta_info(self.piece_with_special if finished else None),
                finished=finished,
            )
        )
