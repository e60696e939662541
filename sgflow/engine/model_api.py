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

__all__ = ["DecodeFailed", "Model", "ModelInfo", "Part", "hf_architectures"]

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
    architecture: str = "llama"  # the GGUF's general.architecture


# GGUF's general.architecture → the Hugging Face class name SGLang reports in
# /model_info (llama.cpp's convert_hf_to_gguf.py registers each class under its GGUF name;
# Mistral and several others convert to "llama").
_HF_CLASSES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen2moe": "Qwen2MoeForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "qwen3moe": "Qwen3MoeForCausalLM",
    "gemma": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "phi2": "PhiForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "falcon": "FalconForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "gptneox": "GPTNeoXForCausalLM",
    "starcoder2": "Starcoder2ForCausalLM",
    "stablelm": "StableLmForCausalLM",
    "olmo": "OlmoForCausalLM",
    "olmo2": "Olmo2ForCausalLM",
    "deepseek2": "DeepseekV2ForCausalLM",
    "granite": "GraniteForCausalLM",
    "internlm2": "InternLM2ForCausalLM",
    "command-r": "CohereForCausalLM",
    "exaone": "ExaoneForCausalLM",
    "smollm3": "SmolLM3ForCausalLM",
    "mamba": "MambaForCausalLM",
    "bloom": "BloomForCausalLM",
    "mpt": "MPTForCausalLM",
}


def hf_architectures(gguf_architecture: str) -> list[str]:
    """What ``/model_info`` lists as ``architectures`` for a GGUF: the Hugging Face class
    where the name is known, else the GGUF's own name (never a guess)."""
    return [_HF_CLASSES.get(gguf_architecture, gguf_architecture)]


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
