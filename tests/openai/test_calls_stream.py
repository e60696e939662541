"""Function calls read out of generated JSON as it streams: whatever the split and the
formatting, each call's name comes once, first, and its pieces add up to its arguments."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sgflow.openai.calls_stream import CallScanner

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
_calls = st.lists(
    st.tuples(
        st.from_regex(r"[a-zA-Z0-9_-]{1,12}", fullmatch=True),
        st.dictionaries(st.text(max_size=6), _values, max_size=4),
    ),
    min_size=1,
    max_size=3,
)


def scan(text: str, *, array: bool, seed: int) -> tuple[dict[int, str], dict[int, str]]:
    rnd = random.Random(seed)
    scanner = CallScanner(array=array)
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    at = 0
    while at < len(text):
        step = rnd.randint(1, 9)
        for piece in scanner.feed(text[at : at + step]):
            if piece.name is not None:
                assert piece.call not in names, "a call's name comes once"
                assert piece.call not in arguments, "the name comes with the first piece"
                names[piece.call] = piece.name
            arguments[piece.call] = arguments.get(piece.call, "") + piece.text
        at += step
    return names, arguments


@settings(max_examples=150, deadline=None)
@given(
    calls=_calls,
    indent=st.sampled_from([None, 0, 2]),
    ascii_only=st.booleans(),
    seed=st.integers(0, 10**6),
)
def test_any_calls_in_any_pieces_add_up(
    calls: list[tuple[str, dict[str, Any]]], indent: int | None, ascii_only: bool, seed: int
) -> None:
    objects = [{"name": name, "arguments": args} for name, args in calls]
    for array in (True, False):
        if not array and len(objects) > 1:
            continue
        document = objects if array else objects[0]
        text = json.dumps(document, indent=indent, ensure_ascii=ascii_only)
        names, arguments = scan(text, array=array, seed=seed)
        assert [names[i] for i in sorted(names)] == [name for name, _ in calls]
        assert [json.loads(arguments[i]) for i in sorted(arguments)] == [args for _, args in calls]


def test_arguments_are_the_generated_text_character_for_character() -> None:
    text = '[ {"name" : "f", "arguments":{ "q": "a \\" } ] {" , "n": [1, {"x": null}] } } ]'
    names, arguments = scan(text, array=True, seed=1)
    assert names == {0: "f"}
    assert arguments == {0: '{ "q": "a \\" } ] {" , "n": [1, {"x": null}] }'}


def test_a_cut_off_call_gives_what_was_generated() -> None:
    names, arguments = scan('{"name": "f", "arguments": {"q": "par', array=False, seed=3)
    assert names == {0: "f"} and arguments == {0: '{"q": "par'}
