"""An honest stand-in for the llama.cpp model (:class:`sgflow.engine.model_api.Model`).

It keeps llama.cpp's rules where the scheduler could break them, and fails the same way:

- **Vocabulary**: token 0 is the end-of-sequence control token (``</s>``, empty bytes unless
  ``special``); the others are printable ASCII characters and a few words; ``tokenize`` is
  greedy longest match.
- **Logits** are a deterministic function of what the *KV cache* holds for the sequence at that
  position (not of what the scheduler believes): by default the next token is the one after
  the last (``next_token``), so a prefix copied wrong or a position skipped gives a wrong
  answer, not a silent one.
- **KV cells**: a unified cache of ``n_ctx`` cells; a cell holds one position for a set of
  sequences; ``copy_prefix`` shares cells; a decode needs one free cell per token and returns
  code 1 without writing anything when there are not enough (llama.cpp's "no KV slot"). A
  part whose first position is not the sequence's length is refused (code -1, like
  llama.cpp's inconsistent-positions check), and ``logits`` of a row that was not asked for
  raises.
- **Injected failures**: ``fail(parts)`` is called before each decode; a non-zero result is
  returned as the decode's error code (nothing written), and it may act (cancel a request)
  as if another thread did so mid-decode.
"""

from __future__ import annotations

import string
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from sgflow.engine.model_api import DecodeFailed, ModelInfo, Part

__all__ = ["EOS", "FakeModel"]

EOS = 0
WORDS = ["hello", "world", "true", "false", '{"', '":', "null"]


def _next_after_last(history: list[int], n_vocab: int) -> int:
    return history[-1] % (n_vocab - 1) + 1  # never EOS: the fake runs until told to stop


class FakeModel:
    def __init__(
        self,
        *,
        n_ctx: int = 512,
        n_seq: int = 8,
        n_batch: int = 64,
        next_token: Callable[[list[int], int], int] = _next_after_last,
        fail: Callable[[list[Part]], int] | None = None,
    ) -> None:
        self.pieces: list[bytes] = [b""] + [c.encode() for c in string.printable[:95]]
        self.pieces += [w.encode() for w in WORDS]
        self.n_ctx = n_ctx
        self.n_seq = n_seq
        self.n_batch = n_batch
        self.next_token = next_token
        self.fail = fail
        self.info = ModelInfo(
            path="/fake/fake-model.gguf",
            name="fake",
            n_vocab=len(self.pieces),
            n_ctx_train=n_ctx,
            n_layer=1,
            bos=-1,
            eos=EOS,
            add_bos=False,
            eog_ids=(EOS,),
            chat_template=None,
        )
        # cells[i] is (position, token, set of sequences) or None when free
        self.cells: list[tuple[int, int, set[int]] | None] = [None] * n_ctx
        self._last_logits: dict[int, npt.NDArray[np.float32]] = {}
        self.decodes = 0
        self.closed = False

    # -- what tests look at -----------------------------------------------------------------

    def used_cells(self) -> int:
        return sum(1 for c in self.cells if c is not None)

    def history(self, seq: int) -> list[int]:
        """The tokens ``seq`` holds, by position; raises if a position is missing."""
        held = sorted((pos, tok) for c in self.cells if c and seq in c[2] for pos, tok in [c[:2]])
        assert [p for p, _ in held] == list(range(len(held))), f"seq {seq} has holes: {held}"
        return [t for _, t in held]

    # -- tokens -----------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        data, out, i = text.encode(), [], 0
        while i < len(data):
            best = max(
                (t for t in range(1, len(self.pieces)) if data.startswith(self.pieces[t], i)),
                key=lambda t: len(self.pieces[t]),
                default=None,
            )
            if best is None:
                raise ValueError(f"the fake vocabulary cannot spell {data[i : i + 1]!r}")
            out.append(best)
            i += len(self.pieces[best])
        return out

    def piece(self, token: int, *, special: bool = False) -> bytes:
        if token == EOS:
            return b"</s>" if special else b""
        return self.pieces[token]

    def vocab_bytes(self) -> list[bytes]:
        return [self.piece(t) for t in range(self.info.n_vocab)]

    def warm_up(self) -> None:
        self.decode([(self.n_seq - 1, [1] * 4, 0, [])])
        self.remove(self.n_seq - 1)

    # -- KV ---------------------------------------------------------------------------------

    def _length(self, seq: int) -> int:
        return sum(1 for c in self.cells if c and seq in c[2])

    def copy_prefix(self, src: int, dst: int, length: int) -> None:
        held = {c[0] for c in self.cells if c and dst in c[2]}
        for c in self.cells:
            if c and src in c[2] and c[0] < length:
                if c[0] in held:  # llama.cpp would keep both cells: two values for one position
                    raise AssertionError(f"seq {dst} already holds position {c[0]}")
                c[2].add(dst)

    def truncate(self, seq: int, length: int) -> None:
        for i, c in enumerate(self.cells):
            if c and seq in c[2] and c[0] >= length:
                c[2].discard(seq)
                if not c[2]:
                    self.cells[i] = None

    def remove(self, seq: int) -> None:
        self.truncate(seq, 0)

    # -- compute ----------------------------------------------------------------------------

    def decode(self, parts: list[Part]) -> list[dict[int, int]]:
        n = sum(len(tokens) for _, tokens, _, _ in parts)
        if n > self.n_batch:
            raise ValueError(f"batch of {n} tokens exceeds n_batch={self.n_batch}")
        if n == 0:
            return [{} for _ in parts]
        code = self.fail(parts) if self.fail else 0
        if code:
            raise DecodeFailed(code)
        for seq, _, pos0, _ in parts:
            if not 0 <= seq < self.n_seq or pos0 != self._length(seq):
                raise DecodeFailed(-1)
        free = [i for i, c in enumerate(self.cells) if c is None]
        if len(free) < n:
            raise DecodeFailed(1)
        self.decodes += 1
        rows: list[dict[int, int]] = []
        logits: dict[int, npt.NDArray[np.float32]] = {}
        row = 0
        for seq, tokens, pos0, want in parts:
            history = self.history(seq)
            part_rows: dict[int, int] = {}
            for k, tok in enumerate(tokens):
                self.cells[free.pop(0)] = (pos0 + k, tok, {seq})
                history.append(tok)
                if k in want:
                    logits[row] = self._logits(history)
                    part_rows[k] = row
                row += 1
            rows.append(part_rows)
        self._last_logits = logits
        return rows

    def _logits(self, history: list[int]) -> npt.NDArray[np.float32]:
        n = self.info.n_vocab
        best = self.next_token(history, n)
        # a ladder: the chosen token first, then the ones after it, so a grammar mask that
        # forbids the favourite still gets a deterministic second choice
        out = -np.array([(t - best) % n for t in range(n)], dtype=np.float32)
        return out

    def logits(self, row: int) -> npt.NDArray[np.float32]:
        if row not in self._last_logits:
            raise IndexError(f"row {row} has no logits in the last decode")
        return self._last_logits[row].copy()

    def close(self) -> None:
        self.closed = True
