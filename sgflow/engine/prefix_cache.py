"""Prefix reuse across requests: which KV sequence ("slot") holds which tokens.

The KV cells live in llama.cpp (one unified cache, many sequences). This module decides,
for a new prompt, which slot to run it in and how many leading tokens it can take from
the cache: it finds the slot sharing the longest prefix with the prompt (any slot, not
only the last one used), and either extends that slot in place (when its content is a
prefix of the prompt) or shares the common prefix into a fresh slot, so the old slot's
divergent tail stays cached for a later request. Shared cells cost nothing twice.

Memory is bounded in cells (``capacity`` tokens = ``--cache-mb`` / bytes per token), counted
as llama.cpp owns them: a cell is shared only when ``copy_prefix`` shared it, so each slot
keeps the ids of the cells holding its tokens and each cell a count of the slots holding it
(SGLang's radix cache counts references the same way). Equal tokens decoded in two slots (a
recomputed last prompt token, two identical answers) are two cells, not one. Idle slots are
evicted least recently used first.

Pure logic: the KV operations go through the small :class:`KVOps` protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Acquired", "KVOps", "PrefixCache", "common_prefix_len"]


class KVOps(Protocol):
    def copy_prefix(self, src: int, dst: int, length: int) -> None: ...
    def truncate(self, seq: int, length: int) -> None: ...
    def remove(self, seq: int) -> None: ...


def common_prefix_len(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common prefix (token lists or bytes), by binary search on
    slice equality, which runs in C."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class _Slot:
    tokens: list[int] = field(default_factory=list)
    cells: list[int] = field(default_factory=list)  # the cell holding each token, by position
    busy: bool = False
    last_used: int = 0


@dataclass(frozen=True)
class Acquired:
    slot: int
    reused: int


class PrefixCache:
    """Slots ``0..n_slots-1`` over a KV store of ``capacity`` cells."""

    def __init__(self, kv: KVOps, *, n_slots: int, capacity: int) -> None:
        if n_slots < 1:
            raise ValueError("n_slots must be at least 1")
        self._kv = kv
        self._slots = [_Slot() for _ in range(n_slots)]
        self.capacity = capacity
        self._tick = 0
        self._refs: dict[int, int] = {}  # cell id -> slots holding it
        self._next_cell = 0
        self.hits_tokens = 0
        self.evictions = 0

    # -- queries ----------------------------------------------------------------------------

    @property
    def n_slots(self) -> int:
        return len(self._slots)

    def tokens(self, slot: int) -> list[int]:
        return self._slots[slot].tokens

    def used_cells(self) -> int:
        """KV cells held by any slot, each counted once however many slots share it."""
        return len(self._refs)

    def free_slots(self) -> int:
        return sum(1 for s in self._slots if not s.busy)

    def longest_match(self, prompt: list[int]) -> tuple[int, int]:
        """``(slot, length)`` of the slot sharing the longest prefix with ``prompt``."""
        best, best_len = -1, 0
        for i, s in enumerate(self._slots):
            if not s.tokens:
                continue
            n = common_prefix_len(s.tokens, prompt)
            if n > best_len or (
                n == best_len and n > 0 and s.last_used > self._slots[best].last_used
            ):
                best, best_len = i, n
        return best, best_len

    # -- mutations --------------------------------------------------------------------------

    def acquire(self, prompt: list[int], *, max_reuse: int) -> Acquired | None:
        """Pick a slot for ``prompt`` and make its first ``reused`` tokens valid KV.

        ``max_reuse`` caps the reuse (the last prompt token is always recomputed so its
        logits exist; logprob requests need more). Returns None when every slot is busy.
        """
        if all(s.busy for s in self._slots):
            return None
        self._tick += 1
        src, match = self.longest_match(prompt)
        reuse = min(match, max_reuse)
        other = self._free_slot(avoid=src)
        src_idle = src >= 0 and not self._slots[src].busy
        if src_idle and (reuse == len(self._slots[src].tokens) or other < 0):
            # extend the slot in place: its content is a prefix of the prompt, or it is the
            # only idle slot left (then its divergent tail is given up)
            target = src
        else:
            target = other
            if self._slots[target].tokens:
                self.evictions += 1
            self.drop(target)
            if reuse > 0:
                self._kv.copy_prefix(src, target, reuse)
                shared = self._slots[src].cells[:reuse]
                for cell in shared:
                    self._refs[cell] += 1
                self._slots[target].tokens = prompt[:reuse]
                self._slots[target].cells = shared
        slot = self._slots[target]
        if len(slot.tokens) > reuse:
            self._kv.truncate(target, reuse)
            self._let_go(slot.cells[reuse:])
            slot.tokens = slot.tokens[:reuse]
            slot.cells = slot.cells[:reuse]
        slot.busy = True
        slot.last_used = self._tick
        self.hits_tokens += reuse
        return Acquired(target, reuse)

    def extend(self, slot: int, tokens: list[int]) -> None:
        """Record that ``tokens`` were decoded into ``slot`` after its current content (in
        cells of their own)."""
        s = self._slots[slot]
        s.tokens.extend(tokens)
        first = self._next_cell
        self._next_cell += len(tokens)
        s.cells.extend(range(first, self._next_cell))
        self._refs.update(dict.fromkeys(range(first, self._next_cell), 1))

    def release(self, slot: int) -> None:
        s = self._slots[slot]
        s.busy = False
        self._tick += 1
        s.last_used = self._tick

    def drop(self, slot: int) -> None:
        """Forget a slot's content and free the cells no other slot holds."""
        self._kv.remove(slot)
        s = self._slots[slot]
        self._let_go(s.cells)
        s.tokens, s.cells = [], []

    def _let_go(self, cells: list[int]) -> None:
        refs = self._refs
        for cell in cells:
            left = refs[cell] - 1
            if left:
                refs[cell] = left
            else:
                del refs[cell]

    def make_room(self, cells: int, *, protect: int = -1) -> bool:
        """Evict idle slots (never ``protect``), least recently used first, until ``cells``
        more fit. False when even evicting every idle slot is not enough."""
        while self.used_cells() + cells > self.capacity:
            victim = self._lru_idle(with_tokens=True, avoid=protect)
            if victim < 0:
                return False
            self.drop(victim)
            self.evictions += 1
        return True

    def evict_one(self) -> bool:
        victim = self._lru_idle(with_tokens=True)
        if victim < 0:
            return False
        self.drop(victim)
        self.evictions += 1
        return True

    def flush(self) -> bool:
        """Empty every idle slot; False (and nothing done) while any slot is busy."""
        if any(s.busy for s in self._slots):
            return False
        for i in range(len(self._slots)):
            self.drop(i)
        return True

    # -- helpers ----------------------------------------------------------------------------

    def _lru_idle(self, *, with_tokens: bool, avoid: int = -1) -> int:
        candidates = [
            (s.last_used, i)
            for i, s in enumerate(self._slots)
            if not s.busy and i != avoid and (s.tokens or not with_tokens)
        ]
        return min(candidates)[1] if candidates else -1

    def _free_slot(self, *, avoid: int) -> int:
        """An idle slot other than ``avoid``: an empty one, else the least recently used."""
        for i, s in enumerate(self._slots):
            if not s.busy and not s.tokens and i != avoid:
                return i
        return self._lru_idle(with_tokens=False, avoid=avoid)
