"""Reuse cached KV across a tokenization boundary.

A multi-step program sends back, as text, what the engine generated: "…assistant\\n" +
generated JSON + "<|im_end|>…". Re-tokenizing that text rarely reproduces the tokens the model
generated (byte-level BPE merges across the old prompt/generation boundary and inside
constrained output), so a token-level prefix match stops at the first differing token and the
whole generated part is computed again: measured 258 of 694 tokens reused after a 400-token
JSON step. Matching on *bytes* instead finds the cached slot whose text is the longest prefix
of the new prompt; the prompt is then that slot's tokens plus the tokenization of the rest.
The model sees its own tokens for the part it generated, which is what it conditioned on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sgflow.engine.prefix_cache import common_prefix_len

__all__ = ["align_prompt"]


def align_prompt(
    text: str,
    slots: Sequence[tuple[list[int], list[bytes]]],
    *,
    tokenize: Callable[[str], list[int]],
    min_gain: int,
    baseline: int,
) -> list[int] | None:
    """A tokenization of ``text`` that starts with the most cached tokens of any slot.

    Returns None unless it reuses at least ``min_gain`` more tokens than ``baseline`` (what
    the canonical tokenization reuses), so well-aligned prompts keep their usual tokens.
    """
    data = text.encode("utf-8")
    best_tokens: list[int] = []
    best_k = 0
    best_pieces: list[bytes] = []
    for tokens, pieces in slots:
        if len(tokens) <= baseline + min_gain:
            continue
        joined = b"".join(pieces)
        common = common_prefix_len(joined, data)
        # whole tokens inside the common bytes, ending on a UTF-8 character boundary
        k, offset = 0, 0
        for i, p in enumerate(pieces):
            if offset + len(p) > common:
                break
            offset += len(p)
            if offset == len(data) or (data[offset] & 0xC0) != 0x80:
                k = i + 1
        if k > best_k:
            best_k, best_tokens, best_pieces = k, tokens, pieces
    if best_k < baseline + min_gain:
        return None
    consumed = sum(len(p) for p in best_pieces[:best_k])
    rest = data[consumed:].decode("utf-8")
    return best_tokens[:best_k] + (tokenize(rest) if rest else [])
