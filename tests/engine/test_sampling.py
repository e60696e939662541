"""Sampling parameters applied to logits, without a model."""

from __future__ import annotations

import numpy as np
import pytest

from sgflow.engine.sampling import Sampler, log_softmax, top_logprobs


def sampler(**overrides: object) -> Sampler:
    params: dict[str, object] = dict(
        temperature=0.0,
        top_p=1.0,
        top_k=-1,
        min_p=0.0,
        frequency_penalty=0.0,
        presence_penalty=0.0,
        repetition_penalty=1.0,
        min_new_tokens=0,
        ignore_eos=False,
        end_ids=[0],
        logit_bias=None,
        seed=7,
    )
    params.update(overrides)
    return Sampler(**params)  # type: ignore[arg-type]


LOGITS = np.array([5.0, 1.0, 3.0, 2.0], dtype=np.float32)


def test_greedy_picks_the_argmax() -> None:
    s = sampler()
    assert s.choose(s.process(LOGITS, n_generated=0, allowed=None)) == 0


def test_min_new_tokens_and_ignore_eos_mask_the_end_token() -> None:
    for s in (sampler(min_new_tokens=3), sampler(ignore_eos=True)):
        assert s.choose(s.process(LOGITS, n_generated=0, allowed=None)) == 2


def test_grammar_mask_forbids_tokens_and_none_when_nothing_is_allowed() -> None:
    s = sampler()
    allowed = np.array([False, True, False, True])
    assert s.choose(s.process(LOGITS, n_generated=0, allowed=allowed)) == 3
    assert s.choose(s.process(LOGITS, n_generated=0, allowed=np.zeros(4, bool))) is None


def test_penalties_lower_repeated_tokens() -> None:
    s = sampler(frequency_penalty=1.5, end_ids=[])
    s.observe(0)
    s.observe(0)
    assert s.choose(s.process(LOGITS, n_generated=2, allowed=None)) == 2
    r = sampler(repetition_penalty=2.0, end_ids=[])
    r.observe(0)
    assert r.process(LOGITS, n_generated=1, allowed=None)[0] == pytest.approx(2.5)


def test_the_repetition_penalty_counts_the_prompt_and_the_others_only_the_output() -> None:
    # SGLang's semantics: repetition over prompt and output; frequency/presence over output
    r = sampler(repetition_penalty=2.0, end_ids=[], prompt=[0, 0, 3])
    processed = r.process(LOGITS, n_generated=0, allowed=None)
    assert processed.tolist() == pytest.approx([2.5, 1.0, 3.0, 1.0])
    r.observe(2)
    processed = r.process(LOGITS, n_generated=1, allowed=None)
    assert processed.tolist() == pytest.approx([2.5, 1.0, 1.5, 1.0])
    negative = sampler(repetition_penalty=2.0, end_ids=[], prompt=[1])
    assert negative.process(-LOGITS, n_generated=0, allowed=None)[1] == pytest.approx(-2.0)
    f = sampler(frequency_penalty=1.0, presence_penalty=0.5, end_ids=[], prompt=[0, 0])
    assert f.process(LOGITS, n_generated=0, allowed=None).tolist() == LOGITS.tolist()


def test_logit_bias_is_added() -> None:
    s = sampler(logit_bias={1: 10.0})
    assert s.choose(s.process(LOGITS, n_generated=0, allowed=None)) == 1


def test_top_k_one_is_greedy_and_seeds_reproduce() -> None:
    s = sampler(temperature=1.0, top_k=1)
    assert {s.choose(s.process(LOGITS, n_generated=0, allowed=None)) for _ in range(20)} == {0}
    a = sampler(temperature=1.0, seed=3)
    b = sampler(temperature=1.0, seed=3)
    draws_a = [a.choose(LOGITS) for _ in range(30)]
    assert draws_a == [b.choose(LOGITS) for _ in range(30)]
    assert len(set(draws_a)) > 1


def test_top_p_keeps_only_the_nucleus() -> None:
    s = sampler(temperature=1.0, top_p=0.5)
    assert {s.choose(LOGITS) for _ in range(50)} == {0}


def test_log_softmax_and_top_logprobs() -> None:
    lp = log_softmax(LOGITS)
    assert float(np.exp(lp).sum()) == pytest.approx(1.0, rel=1e-5)
    top = top_logprobs(lp, 2)
    assert [t for _, t in top] == [0, 2]
