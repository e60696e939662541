"""Byte-level prompt alignment with cached slots, without a model."""

from __future__ import annotations

from sgflow.engine.prefix_cache import common_prefix_len
from sgflow.engine.text_align import SlotText, align_prompt

VOCAB = {1: b"ab", 2: b"c", 3: b"abc", 4: b"d", 5: b"\xc3", 6: b"\xa9", 7: b"e"}
INVERSE = {v: k for k, v in VOCAB.items()}


def tokenize(text: str) -> list[int]:
    """Greedy longest-match over the toy vocabulary (canonical tokenization)."""
    data, out = text.encode(), []
    while data:
        for size in (3, 2, 1):
            if data[:size] in INVERSE:
                out.append(INVERSE[data[:size]])
                data = data[size:]
                break
        else:
            raise ValueError(data)
    return out


def slot(tokens: list[int]) -> SlotText:
    return SlotText(tokens).grow(VOCAB.__getitem__)


def test_common_prefix_of_bytes() -> None:
    assert common_prefix_len(b"abcd", b"abxd") == 2
    assert common_prefix_len(b"ab", b"abc") == 2
    assert common_prefix_len(b"", b"a") == 0


def test_reuses_a_slot_whose_tokens_differ_but_whose_text_matches() -> None:
    cached = [1, 2, 4, 4, 4, 4]  # "ab" "c" "d" "d" "d" "d", canonical would be "abc" "d"…
    assert tokenize("abcdddd") == [3, 4, 4, 4, 4]
    aligned = align_prompt("abcddddd", [slot(cached)], tokenize=tokenize, min_gain=1, baseline=0)
    assert aligned == [1, 2, 4, 4, 4, 4, 4]


def test_no_alignment_without_enough_gain() -> None:
    assert (
        align_prompt("abcd", [slot([1, 2, 4])], tokenize=tokenize, min_gain=8, baseline=0) is None
    )
    assert align_prompt("xyz", [slot([1, 2])], tokenize=tokenize, min_gain=1, baseline=0) is None


def test_never_splits_a_utf8_character() -> None:
    cached = [4, 4, 5, 6, 4]  # "dd" + "é" as two byte tokens + "d"
    aligned = align_prompt("ddée", [slot(cached)], tokenize=tokenize, min_gain=1, baseline=0)
    assert aligned == [4, 4, 5, 6, 7]
    # a prompt diverging inside the character backs off to the character start
    aligned = align_prompt(
        "dd\u00e8", [slot(cached)], tokenize=lambda t: [9], min_gain=1, baseline=0
    )
    assert aligned == [4, 4, 9]


def test_a_slot_is_spelled_once_as_it_grows() -> None:
    spelled: list[int] = []

    def piece(token: int) -> bytes:
        spelled.append(token)
        return VOCAB[token]

    tokens = [1, 2]
    text = SlotText(tokens).grow(piece)
    tokens.extend([4, 4])  # the cache extends its list in place as the slot decodes
    text.grow(piece).grow(piece)
    assert spelled == [1, 2, 4, 4]
    assert bytes(text.data) == b"abcdd" and text.ends == [2, 3, 4, 5]
