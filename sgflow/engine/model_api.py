"""What the scheduler needs of a model: the one interface between batching and llama.cpp.

:class:`Model` names only what the scheduler calls (tokens in and out, one batched decode,
logits by row, the KV operations of :class:`~sgflow.engine.prefix_cache.KVOps`, and the
sizes it plans with). :class:`~sgflow.engine.model.LlamaModel` implements it over llama.cpp;
``tests/engine/fake_model.py`` implements it honestly in Python (deterministic logits, a real
cell budget that fails a decode the way llama.cpp does), so the scheduler's risky paths are
unit-tested without a model. Nothing here imports llama.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sgflow.engine.prefix_cache import KVOps

__all__ = ["DecodeFailed", "Model", "ModelInfo", "Part"]

# One sequence's share of a batch: (kv sequence, tokens, position of the first token,
# offsets within ``tokens`` whose logits are wanted).
Part = tuple[int, list[int], int, list[int]]


class DecodeFailed(RuntimeError):
    """``llama_decode`` returned ``code``: 1 = no KV cells free for the batch (retry after
    freeing some), 2 = aborted, negative = the batch or the computation failed. llama.cpp
    removes what the failed batch had written, so the KV holds what it held before."""

    def __init__(self, code: int) -> None:
        super().__init__(f"llama_decode returned {code}")
        self.code = code


@dataclass(frozen=True)
class ModelInfo:
    path: str
    name: str
    n_vocab: int
    n_ctx_train: int
    n_layer: int
    bos: int
    eos: int
    add_bos: bool
    eog_ids: tuple[int, ...]
    chat_template: str | None


class Model(KVOps, Protocol):
    """A loaded model with one multi-sequence KV cache, driven from one thread.

    ``n_ctx`` is the KV budget in cells shared by all sequences, ``n_seq`` the number of
    KV sequences (slots), ``n_batch`` the most tokens one :meth:`decode` takes.
    """

    info: ModelInfo
    n_ctx: int
    n_seq: int
    n_batch: int

    def warm_up(self) -> None:
        """One small decode from the thread that will decode (leaves the KV as it was)."""
        ...

    def tokenize(self, text: str) -> list[int]: ...

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of ``token``; control tokens are empty unless ``special``."""
        ...

    def decode(self, parts: list[Part]) -> list[dict[int, int]]:
        """Decode one batch; per part, a map from each wanted offset to the row that
        :meth:`logits` reads. Raises :class:`DecodeFailed`."""
        ...

    def logits(self, row: int) -> npt.NDArray[np.float32]:
        """A copy of the logits at ``row`` of the last decode (``n_vocab`` floats)."""
        ...
