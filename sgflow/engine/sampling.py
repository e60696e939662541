"""Choosing the next token from logits, SGLang's sampling parameters, in numpy.

Order of operations (SGLang's): logit bias, penalties (repetition, frequency, presence,
over the generated tokens), end-of-sequence masking (``ignore_eos``, ``min_new_tokens``),
the grammar's allowed-token mask, then greedy (temperature 0) or temperature, top-k,
top-p and min-p sampling. Logprobs are always of the model's raw distribution.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

__all__ = ["Sampler", "log_softmax", "top_logprobs"]

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

_GREEDY_BELOW = 1e-5


def log_softmax(logits: FloatArray) -> FloatArray:
    m = np.max(logits)
    shifted = logits - m
    out: FloatArray = shifted - np.log(np.sum(np.exp(shifted)))
    return out


def top_logprobs(logprobs: FloatArray, k: int) -> list[tuple[float, int]]:
    if k <= 0:
        return []
    idx = np.argpartition(-logprobs, k)[:k]
    idx = idx[np.argsort(-logprobs[idx])]
    return [(float(logprobs[i]), int(i)) for i in idx]


class Sampler:
    """Per-sequence sampling state (the random generator and penalty counts)."""

    def __init__(
        self,
        *,
        temperature: float,
        top_p: float,
        top_k: int,
        min_p: float,
        frequency_penalty: float,
        presence_penalty: float,
        repetition_penalty: float,
        min_new_tokens: int,
        ignore_eos: bool,
        end_ids: Iterable[int],
        logit_bias: dict[int, float] | None,
        seed: int | None,
        prompt: Iterable[int] = (),
    ) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.min_p = min_p
        self.frequency_penalty = frequency_penalty
        self.presence_penalty = presence_penalty
        self.repetition_penalty = repetition_penalty
        self.min_new_tokens = min_new_tokens
        self.ignore_eos = ignore_eos
        self.end_ids = np.array(sorted(set(end_ids)), dtype=np.int64)
        self.logit_bias = logit_bias or {}
        self.rng = np.random.default_rng(seed)
        self._counts: Counter[int] = Counter()
        # the repetition penalty covers the prompt and the output, as SGLang's does
        # (frequency and presence penalties count generated tokens only, as there)
        self._prompt = np.unique(np.fromiter(prompt, dtype=np.int64))
        self._seen: npt.NDArray[np.bool_] | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature < _GREEDY_BELOW

    def observe(self, token: int) -> None:
        self._counts[token] += 1
        if self._seen is not None and 0 <= token < self._seen.shape[0]:
            self._seen[token] = True

    def forget(self, token: int) -> None:
        """Undo one :meth:`observe` (a sampled token replaced by another split of its text)."""
        left = self._counts[token] - 1
        if left > 0:
            self._counts[token] = left
            return
        self._counts.pop(token, None)
        if self._seen is not None and 0 <= token < self._seen.shape[0]:
            self._seen[token] = bool(np.isin(token, self._prompt))

    def _repeated(self, n_vocab: int) -> npt.NDArray[np.bool_]:
        """Tokens of the prompt or the output so far, as a mask over the vocabulary."""
        if self._seen is None or self._seen.shape[0] != n_vocab:
            seen = np.zeros(n_vocab, dtype=bool)
            seen[self._prompt[(self._prompt >= 0) & (self._prompt < n_vocab)]] = True
            for token in self._counts:
                if 0 <= token < n_vocab:
                    seen[token] = True
            self._seen = seen
        return self._seen

    def process(
        self, logits: FloatArray, *, n_generated: int, allowed: BoolArray | None
    ) -> FloatArray:
        """Apply bias, penalties and masks; returns a new array (``-inf`` = forbidden)."""
        out = logits.astype(np.float32, copy=True)
        for token, bias in self.logit_bias.items():
            if 0 <= token < out.shape[0]:
                out[token] += bias
        if self.repetition_penalty != 1.0:
            seen = self._repeated(out.shape[0])
            vals = out[seen]
            out[seen] = np.where(
                vals > 0, vals / self.repetition_penalty, vals * self.repetition_penalty
            )
        if self._counts:
            ids = np.fromiter(self._counts.keys(), dtype=np.int64)
            counts = np.fromiter(self._counts.values(), dtype=np.float32)
            if self.frequency_penalty:
                out[ids] -= self.frequency_penalty * counts
            if self.presence_penalty:
                out[ids] -= self.presence_penalty
        if self.end_ids.size and (self.ignore_eos or n_generated < self.min_new_tokens):
            out[self.end_ids] = -np.inf
        if allowed is not None:
            out[~allowed] = -np.inf
        return out

    def choose(self, processed: FloatArray) -> int | None:
        """Pick a token from processed logits; None when every token is forbidden."""
        if not np.isfinite(processed).any():
            return None
        if self.greedy:
            return int(np.argmax(processed))
        scaled = processed / np.float32(self.temperature)
        if 0 < self.top_k < scaled.shape[0]:
            kth = np.partition(scaled, -self.top_k)[-self.top_k]
            scaled = np.where(scaled < kth, -np.inf, scaled).astype(np.float32)
        probs = np.exp(scaled - np.max(scaled))
        probs /= probs.sum()
        if self.min_p > 0:
            probs = np.where(probs < self.min_p * probs.max(), 0.0, probs)
        if self.top_p < 1.0:
            order = np.argsort(-probs)
            cumulative = np.cumsum(probs[order])
            cut = int(np.searchsorted(cumulative, self.top_p)) + 1
            keep = np.zeros_like(probs, dtype=bool)
            keep[order[:cut]] = True
            probs = np.where(keep, probs, 0.0)
        total = probs.sum()
        if total <= 0:
            return int(np.argmax(processed))
        return int(self.rng.choice(probs.shape[0], p=probs / total))
