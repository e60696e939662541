"""The slot table that decides prefix reuse, against a fake KV store that checks its calls."""

from __future__ import annotations

import pytest

from sgflow.engine.prefix_cache import PrefixCache, common_prefix_len


class FakeKV:
    """Tracks which token positions each sequence holds, like llama.cpp's unified cache."""

    def __init__(self) -> None:
        self.seqs: dict[int, int] = {}
        self.calls: list[tuple[str, int, int, int]] = []

    def copy_prefix(self, src: int, dst: int, length: int) -> None:
        assert self.seqs.get(src, 0) >= length, "copied more than the source holds"
        self.seqs[dst] = length
        self.calls.append(("cp", src, dst, length))

    def truncate(self, seq: int, length: int) -> None:
        self.seqs[seq] = min(self.seqs.get(seq, 0), length)
        self.calls.append(("rm", seq, length, -1))

    def remove(self, seq: int) -> None:
        self.seqs[seq] = 0
        self.calls.append(("rm", seq, 0, -1))


def run(cache: PrefixCache, kv: FakeKV, prompt: list[int], generated: int = 0) -> int:
    got = cache.acquire(prompt, max_reuse=len(prompt) - 1)
    assert got is not None
    assert kv.seqs.get(got.slot, 0) == got.reused
    cache.extend(got.slot, prompt[got.reused :] + list(range(900, 900 + generated)))
    kv.seqs[got.slot] = len(prompt) + generated
    cache.release(got.slot)
    return got.reused


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([], [1], 0),
        ([1, 2, 3], [1, 2, 3], 3),
        ([1, 2, 3], [1, 2, 4], 2),
        ([5], [1], 0),
        ([1, 2], [1, 2, 3], 2),
    ],
)
def test_common_prefix_len(a: list[int], b: list[int], expected: int) -> None:
    assert common_prefix_len(a, b) == expected


def test_non_adjacent_request_reuses_an_older_prefix() -> None:
    kv = FakeKV()
    cache = PrefixCache(kv, n_slots=4, capacity=10_000)
    doc = list(range(100))
    assert run(cache, kv, doc + [1000]) == 0
    assert run(cache, kv, list(range(5000, 5050))) == 0  # unrelated request in between
    assert run(cache, kv, doc + [2000, 2001]) == 100


def test_divergent_tail_stays_cached_for_a_later_request() -> None:
    kv = FakeKV()
    cache = PrefixCache(kv, n_slots=4, capacity=10_000)
    run(cache, kv, list(range(50)) + [1, 1, 1])
    run(cache, kv, list(range(50)) + [2, 2, 2])  # shares 50, must not destroy the first
    assert run(cache, kv, list(range(50)) + [1, 1, 1, 7]) == 53


def test_full_prompt_hit_still_recomputes_the_last_token() -> None:
    kv = FakeKV()
    cache = PrefixCache(kv, n_slots=2, capacity=10_000)
    run(cache, kv, list(range(20)))
    assert run(cache, kv, list(range(20))) == 19


def test_make_room_evicts_least_recently_used_and_protects_the_source() -> None:
    kv = FakeKV()
    cache = PrefixCache(kv, n_slots=4, capacity=100)
    run(cache, kv, list(range(40)))
    run(cache, kv, list(range(100, 140)))
    assert cache.used_cells() == 80
    assert cache.make_room(30, protect=0)
    assert cache.used_cells() == 40
    assert cache.tokens(0) == list(range(40))  # the older but protected slot survived
    assert cache.evictions == 1


def test_make_room_fails_when_busy_slots_hold_the_cells() -> None:
    kv = FakeKV()
    cache = PrefixCache(kv, n_slots=2, capacity=50)
    got = cache.acquire(list(range(40)), max_reuse=39)
    assert got is not None
    cache.extend(got.slot, list(range(40)))
    assert not cache.make_room(20)


def test_acquire_returns_none_when_every_slot_is_busy() -> None:
    cache = PrefixCache(FakeKV(), n_slots=1, capacity=100)
    assert cache.acquire([1, 2], max_reuse=1) is not None
    assert cache.acquire([1, 2], max_reuse=1) is None


def test_flush_refuses_while_busy_then_empties() -> None:
    kv = FakeKV()
    cache = PrefixCache(kv, n_slots=2, capacity=100)
    got = cache.acquire([1, 2, 3], max_reuse=2)
    assert got is not None
    assert not cache.flush()
    cache.release(got.slot)
    assert cache.flush()
    assert cache.used_cells() == 0


def test_max_reuse_caps_what_is_taken_from_the_cache() -> None:
    kv = FakeKV()
    cache = PrefixCache(kv, n_slots=2, capacity=1000)
    run(cache, kv, list(range(30)))
    got = cache.acquire(list(range(30)) + [5], max_reuse=10)
    assert got is not None and got.reused == 10
    assert kv.seqs[got.slot] == 10
