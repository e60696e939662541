"""The scheduler's paths, driven turn by turn (``run_once``) over the honest fake model
(tests/engine/fake_model.py): no llama.cpp, so every branch can be reached on purpose."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
import xgrammar as xgr

from sgflow.engine.constraints import GrammarState
from sgflow.engine.errors import Overloaded
from sgflow.engine.model_api import Model, Part
from sgflow.engine.protocol import SamplingParams, SeqSpec
from sgflow.engine.sampling import Sampler
from sgflow.engine.scheduler import Scheduler
from sgflow.engine.sequence import Sequence, Update
from tests.engine.fake_model import EOS, FakeModel


class Run:
    """A scheduler over a fake model, and the updates each sequence sent."""

    def __init__(self, model: FakeModel | None = None, *, max_running: int = 4) -> None:
        self.model = model or FakeModel()
        typed: Model = self.model  # the fake is a Model
        self.scheduler = Scheduler(typed, max_running=max_running)
        self.updates: dict[str, list[Update]] = {}
        self._compiler: xgr.GrammarCompiler | None = None

    def seq(
        self,
        text: str,
        *,
        regex: str | None = None,
        ebnf: str | None = None,
        **params: Any,
    ) -> Sequence:
        params.setdefault("temperature", 0.0)
        sp = SamplingParams(**params)
        spec = SeqSpec(
            index=0,
            prompt_index=0,
            rid=None,
            text=text,
            input_ids=None,
            params=sp,
            return_logprob=False,
            logprob_start_len=-1,
            top_logprobs_num=0,
        )
        end_ids = frozenset({EOS}) | frozenset(sp.stop_token_ids or [])
        grammar = None
        if regex is not None or ebnf is not None:
            compiler = self.compiler()
            compiled = (
                compiler.compile_regex(regex)
                if regex is not None
                else compiler.compile_grammar(ebnf or "")
            )
            grammar = GrammarState(compiled, self.model.info.n_vocab)
        updates: list[Update] = []
        seq = Sequence(
            spec=spec,
            prompt=self.model.tokenize(text),
            sampler=Sampler(
                temperature=sp.temperature,
                top_p=sp.top_p,
                top_k=sp.top_k,
                min_p=sp.min_p,
                frequency_penalty=sp.frequency_penalty,
                presence_penalty=sp.presence_penalty,
                repetition_penalty=sp.repetition_penalty,
                min_new_tokens=sp.min_new_tokens,
                ignore_eos=sp.ignore_eos,
                end_ids=end_ids,
                logit_bias=None,
                seed=sp.sampling_seed,
            ),
            grammar=grammar,
            end_ids=end_ids,
            sink=updates.append,
        )
        self.updates[seq.rid] = updates
        return seq

    def compiler(self) -> xgr.GrammarCompiler:
        if self._compiler is None:
            info = xgr.TokenizerInfo(
                self.model.vocab_bytes(),
                xgr.VocabType.RAW,
                vocab_size=self.model.info.n_vocab,
                stop_token_ids=[EOS],
            )
            self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        return self._compiler

    def finish(self, *seqs: Sequence, turns: int = 500, submit: bool = True) -> None:
        """Submit ``seqs`` (unless told not to) and turn the loop until each reported its end."""
        if submit:
            self.scheduler.submit(list(seqs))
        for _ in range(turns):
            if all(self.final(s) is not None for s in seqs):
                return
            self.scheduler.run_once()
        raise AssertionError(f"not finished after {turns} turns")

    def final(self, seq: Sequence) -> Update | None:
        done = [u for u in self.updates[seq.rid] if u.finished]
        assert len(done) <= 1, "a sequence finished twice"
        return done[0] if done else None

    def result(self, seq: Sequence) -> tuple[str, dict[str, Any]]:
        update = self.final(seq)
        assert update is not None
        return update.text, update.meta_info["finish_reason"]


def spelled(model: FakeModel, first: str, n: int) -> str:
    """What the fake's default rule generates after ``first``: the next ``n`` tokens."""
    tok = model.tokenize(first)[-1]
    out = []
    for _ in range(n):
        tok = tok % (model.info.n_vocab - 1) + 1
        out.append(model.piece(tok).decode())
    return "".join(out)


def test_generation_follows_the_models_rule_and_stops_at_the_length() -> None:
    run = Run()
    seq = run.seq("abc", max_new_tokens=5)
    run.finish(seq)
    assert run.result(seq) == ("defgh", {"type": "length", "length": 5})
    # the last token was sampled, never decoded: the slot holds the prompt and the rest
    assert run.model.history(seq.slot) == run.model.tokenize("abcdefg")
    assert run.scheduler.cache.tokens(seq.slot) == run.model.tokenize("abcdefg")


def test_a_cached_prefix_is_reused_and_gives_the_same_answer() -> None:
    run = Run()
    first = run.seq("hello world abc", max_new_tokens=3)
    run.finish(first)
    second = run.seq("hello world abd", max_new_tokens=3)
    run.finish(second)
    update = run.final(second)
    assert update is not None
    assert update.meta_info["cached_tokens"] == len(run.model.tokenize("hello world ab"))
    assert run.result(second)[0] == spelled(run.model, "d", 3)


def test_a_long_prompt_is_prefilled_in_chunks_beside_a_running_stream() -> None:
    run = Run(FakeModel(n_batch=16))
    short = run.seq("a", max_new_tokens=30)
    long = run.seq("x" * 100 + "k", max_new_tokens=2)
    run.finish(short, long)
    assert run.result(short)[0] == spelled(run.model, "a", 30)
    assert run.result(long)[0] == spelled(run.model, "k", 2)
    assert run.model.decodes > 100 // 16


def test_the_fake_fails_a_decode_like_llama_cpp_when_cells_run_out() -> None:
    model = FakeModel(n_ctx=8)
    model.decode([(0, [1, 2, 3, 4, 5], 0, [4])])
    try:
        model.decode([(1, [1, 2, 3, 4], 0, [3])])
    except Exception as exc:
        assert getattr(exc, "code", None) == 1
    else:
        raise AssertionError("a decode past the cell budget succeeded")
    assert model.used_cells() == 5  # nothing of the failed batch was written
    model.copy_prefix(0, 1, 3)
    assert model.used_cells() == 5  # shared, not copied
    model.decode([(1, [9], 3, [0])])
    assert model.history(1) == [1, 2, 3, 9]


def test_a_seed_reproduces_its_samples_whatever_runs_beside_it() -> None:
    run = Run()
    seeded = {"max_new_tokens": 12, "temperature": 1.0, "sampling_seed": 42}
    alone = run.seq("abc", **seeded)
    run.finish(alone)
    beside = run.seq("hello", max_new_tokens=30, temperature=1.0)
    again = run.seq("abc", **seeded)
    other = run.seq("abc", **{**seeded, "sampling_seed": 43})
    run.finish(beside, again, other)
    assert run.result(again) == run.result(alone)
    assert run.result(other)[0] != run.result(alone)[0]
    assert run.result(alone)[0] != spelled(run.model, "c", 12), "sampled, not greedy"


# -- a grammar's end ------------------------------------------------------------------------

GRAMMAR_ENDS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("complete", {"regex": "ab"}, "ab", {"type": "stop", "matched": EOS}),
    (
        # complete, but end-of-sequence held off by min_new_tokens: the value is finished
        "complete-eos-masked",
        {"regex": "ab", "min_new_tokens": 5},
        "ab",
        {"type": "stop", "matched": EOS},
    ),
    (
        # the vocabulary has no token for "é": after "ab" nothing is allowed, nothing accepts
        "dead-end",
        {"regex": "ab\u00e9"},
        "ab",
        {"type": "abort", "code": "grammar.dead_end"},
    ),
    (
        "dead-end-in-ebnf",
        {"ebnf": 'root ::= "a" ("b" | "\u00e9\u00e9")'},
        "ab",
        {"type": "stop", "matched": EOS},
    ),
]


def test_a_grammar_that_cannot_be_continued_is_an_error_not_a_stop() -> None:
    run = Run()
    for name, params, text, finish in GRAMMAR_ENDS:
        seq = run.seq("xyz", max_new_tokens=10, **params)
        run.finish(seq)
        got_text, got_finish = run.result(seq)
        assert got_text == text, name
        assert {k: got_finish.get(k) for k in finish} == finish, (name, got_finish)
        if finish["type"] == "abort":
            assert "dead end" in got_finish["message"]


def test_a_dead_end_ends_only_its_own_sequence() -> None:
    run = Run()
    dead = run.seq("xyz", max_new_tokens=10, regex="ab\u00e9")
    fine = run.seq("a", max_new_tokens=6)
    run.finish(dead, fine)
    assert run.result(dead)[1]["code"] == "grammar.dead_end"
    assert run.result(fine) == (spelled(run.model, "a", 6), {"type": "length", "length": 6})


# -- the bounded queue ----------------------------------------------------------------------


def test_a_full_queue_refuses_with_overloaded_and_frees_as_sequences_start() -> None:
    run = Run(max_running=1)
    run.scheduler.max_queued = 2
    first = [run.seq(f"{c}", max_new_tokens=3) for c in "abc"]
    run.scheduler.submit(first)  # 3 > 2, but nothing waits: taken, never refused forever
    assert run.scheduler.stats().waiting == 3
    with pytest.raises(Overloaded, match=r"3 waiting sequences; 1 more would pass its limit of 2"):
        run.scheduler.submit([run.seq("d", max_new_tokens=3)])
    err = Overloaded("x")
    assert (err.status, err.code, err.retryable) == (503, "engine.overloaded", True)
    run.scheduler.run_once()  # one is admitted: two wait
    assert (run.scheduler.stats().waiting, run.scheduler.stats().running) == (2, 1)
    with pytest.raises(Overloaded) as refused:
        run.scheduler.submit([run.seq("d", max_new_tokens=3)])
    assert refused.value.headers == {"Retry-After": "1"} and refused.value.limit == 2
    run.finish(*first, submit=False)
    assert run.scheduler.stats().waiting == 0
    later = run.seq("e", max_new_tokens=3)
    run.finish(later)
    assert run.result(later)[0] == spelled(run.model, "e", 3)


def test_cancelled_waiting_sequences_leave_the_queue() -> None:
    run = Run(max_running=1)
    run.scheduler.max_queued = 2
    seqs = [run.seq(c, max_new_tokens=3) for c in "ab"]
    run.scheduler.submit(seqs)
    run.scheduler.run_once()
    run.scheduler.cancel([seqs[1]])
    run.scheduler.run_once()
    assert run.scheduler.stats().waiting == 0


# -- one sequence's failure is its own ------------------------------------------------------


def test_a_decode_failure_ends_only_the_sequence_whose_part_fails() -> None:
    model = FakeModel()
    poison = model.tokenize("Z")[0]

    def fail(parts: list[Part]) -> int:  # llama_decode's -1 whenever Z's prompt is in the batch
        return -1 if any(poison in tokens for _, tokens, _, _ in parts) else 0

    model.fail = fail
    run = Run(model)
    good = run.seq("a", max_new_tokens=6)
    bad = run.seq("Z", max_new_tokens=6)
    later = run.seq("c", max_new_tokens=4)
    run.finish(good, bad)
    run.finish(later)
    assert run.result(good) == (spelled(model, "a", 6), {"type": "length", "length": 6})
    text, finish = run.result(bad)
    assert text == "" and finish["type"] == "abort" and finish["code"] == "engine.internal"
    assert "failed to decode" in finish["message"]
    assert run.result(later)[0] == spelled(model, "c", 4)
    assert run.scheduler.stats().running == 0


def test_an_error_taking_one_result_ends_only_that_sequence() -> None:
    run = Run()
    good = run.seq("a", max_new_tokens=5)
    bad = run.seq("b", max_new_tokens=5)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a sampler bug")

    bad.sampler.process = broken  # type: ignore[method-assign]
    run.finish(good, bad)
    assert run.result(good) == (spelled(run.model, "a", 5), {"type": "length", "length": 5})
    finish = run.result(bad)[1]
    assert finish["code"] == "engine.internal" and "a sampler bug" in finish["message"]
    assert run.model.used_cells() == len(run.model.tokenize("a")) + 4  # bad's KV was dropped


def test_a_request_cancelled_while_its_batch_decodes_ends_alone_and_frees_its_slot() -> None:
    model = FakeModel()
    run = Run(model)
    keep = run.seq("a", max_new_tokens=12)
    leave = run.seq("b", max_new_tokens=12)
    decodes = 0

    def cancel_mid_batch(parts: list[Part]) -> int:  # as the HTTP thread would, mid-decode
        nonlocal decodes
        decodes += 1
        if decodes == 4:
            run.scheduler.cancel([leave])
        return 0

    model.fail = cancel_mid_batch
    run.scheduler.submit([keep, leave])
    run.finish(keep, submit=False)
    assert run.result(keep) == (spelled(model, "a", 12), {"type": "length", "length": 12})
    assert leave.finish is not None and leave.finish["code"] == "request.aborted"
    assert 0 < len(leave.output) < 12, "it stopped where it was cancelled"
    assert run.final(leave) is None, "nobody is left to tell"
    assert run.scheduler.stats().running == 0 and run.scheduler.cache.free_slots() == model.n_seq
    assert run.scheduler.cache.used_cells() == model.used_cells()


def test_stop_reports_a_loop_still_decoding_so_the_model_is_not_freed_under_it() -> None:
    entered, release = threading.Event(), threading.Event()
    model = FakeModel()

    def hold(parts: list[Part]) -> int:
        if any(
            len(tokens) == 1 and tokens[0] == model.tokenize("q")[0] for _, tokens, _, _ in parts
        ):
            entered.set()
            release.wait()
        return 0

    model.fail = hold
    scheduler = Scheduler(model, max_running=2)
    scheduler.start()
    run = Run(model)
    seq = run.seq("q", max_new_tokens=2)
    scheduler.submit([seq])
    assert entered.wait(timeout=60), "the decode of q never started"
    assert scheduler.stop(timeout=0.05) is False  # held inside decode: still running
    release.set()
    assert scheduler.stop() is True


# -- KV cells, counted as llama.cpp owns them -------------------------------------------------


def test_the_cache_counts_the_cells_the_model_really_holds() -> None:
    run = Run()
    prompt = "hello world abc"
    first = run.seq(prompt, max_new_tokens=4)
    run.finish(first)
    # the same prompt again (its last token recomputed in a cell of its own), twice at once
    # (identical greedy answers in two slots), and once with prompt logprobs (less reuse)
    twins = [run.seq(prompt, max_new_tokens=4) for _ in range(2)]
    probe = run.seq(prompt, max_new_tokens=2)
    probe.spec = probe.spec.__class__(**{**vars(probe.spec), "return_logprob": True})
    run.finish(*twins, probe)
    assert run.result(twins[0]) == run.result(twins[1])
    assert run.scheduler.cache.used_cells() == run.model.used_cells()
    assert run.scheduler.stats().cache_used_tokens == run.model.used_cells()


def test_identical_answers_in_two_slots_do_not_let_a_third_request_overfill_the_cache() -> None:
    # Counting equal tokens once (a trie over the slots) let a request in that the cells
    # could not hold; llama_decode then failed and a request was aborted "KV cache is full".
    prompt = "x" * 20 + "k"
    model = FakeModel(n_ctx=140, n_seq=4)
    run = Run(model, max_running=3)
    warm = run.seq(prompt, max_new_tokens=1)
    run.finish(warm)
    twins = [run.seq(prompt, max_new_tokens=40) for _ in range(2)]
    run.scheduler.submit(twins)
    while len(twins[0].output) < 12:  # they hold 2 x 13 cells of their own by now
        run.scheduler.run_once()
    other = run.seq("y" * 20 + "q", max_new_tokens=24)
    run.scheduler.submit([other])
    run.finish(*twins, other, turns=2000, submit=False)
    for seq, n in ((twins[0], 40), (twins[1], 40), (other, 24)):
        assert run.result(seq)[1] == {"type": "length", "length": n}, run.result(seq)
    assert run.scheduler.cache.used_cells() == model.used_cells() <= model.n_ctx


# -- jump-forward -----------------------------------------------------------------------------

JSONISH = r'\{"name": "[a-z]{2,3}", "ok": (true|false), "tail": "hello world"\}'


def test_forced_text_is_decoded_in_one_step_not_sampled_token_by_token() -> None:
    texts, decodes, forced = [], [], []
    for jump in (True, False):
        run = Run()
        run.scheduler.jump_forward = jump
        seq = run.seq("abc", max_new_tokens=80, regex=JSONISH)
        before = run.model.decodes
        run.finish(seq)
        text, finish = run.result(seq)
        assert finish == {"type": "stop", "matched": EOS}, finish
        assert re.fullmatch(JSONISH, text), text
        texts.append(text)
        decodes.append(run.model.decodes - before)
        forced.append(run.scheduler.stats().forced_tokens)
        if jump:  # the forced text was split with the token before it, as the tokenizer
            # splits the whole answer (the fake's own greedy choices split it otherwise)
            assert seq.output[:-1] == run.model.tokenize(text)
        # what the cache and the model hold agree, forced tokens included
        assert run.scheduler.cache.used_cells() == run.model.used_cells()
        assert run.model.history(seq.slot)[: len(seq.prompt)] == seq.prompt
    assert texts[0] == texts[1], "the same answer, here where the splits agree"
    assert forced[1] == 0 and forced[0] >= 10
    assert decodes[0] * 2 <= decodes[1], decodes


def test_no_jump_forward_with_logprobs_or_past_the_length() -> None:
    run = Run()
    probe = run.seq("abc", max_new_tokens=80, regex=JSONISH)
    probe.spec = probe.spec.__class__(**{**vars(probe.spec), "return_logprob": True})
    short = run.seq("abc", max_new_tokens=5, regex=JSONISH)
    run.finish(probe, short)
    assert run.scheduler.stats().forced_tokens <= 4  # only the short one jumped, within 5
    assert len(probe.output_lp) == len(probe.output)
    text, finish = run.result(short)
    assert finish == {"type": "length", "length": 5} and len(short.output) == 5
    assert text.startswith('{"')


def test_a_long_forced_text_is_taken_in_pieces_that_fit_the_batch() -> None:
    run = Run(FakeModel(n_batch=16), max_running=4)  # at most 3 forced tokens a step
    literal = "hello world " * 6
    seqs = [run.seq(c, max_new_tokens=60, regex=re.escape(literal)) for c in "abcd"]
    run.finish(*seqs)  # the fake raises if a batch is over n_batch
    for seq in seqs:
        assert run.result(seq) == (literal, {"type": "stop", "matched": EOS})
    assert run.scheduler.stats().forced_tokens > 0


def test_a_long_forced_literal_is_not_tokenized_whole_at_every_step() -> None:
    # Tokenizing the whole remaining literal at each step made a 4,000-character literal
    # cost quadratic time; each step now splits only the head it can take.
    run = Run(FakeModel(n_ctx=4096, n_batch=16), max_running=4)
    literal = "hello world " * 340  # 4,080 characters
    calls: list[int] = []
    tokenize = run.model.tokenize

    def counting(text: str) -> list[int]:
        calls.append(len(text))
        return tokenize(text)

    run.model.tokenize = counting  # type: ignore[method-assign]
    seq = run.seq("a", max_new_tokens=2000, regex=re.escape(literal))
    calls.clear()
    run.finish(seq, turns=5000)
    assert run.result(seq) == (literal, {"type": "stop", "matched": EOS})
    assert calls, "the literal was jumped over"
    assert max(calls) <= 512, max(calls)
