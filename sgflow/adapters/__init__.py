"""Engine adapters: one module per kind of engine, behind :class:`~sgflow.adapters.base.Adapter`.

sgflow runs the same programs, with the same guarantees, on SGLang, vLLM, llama.cpp's
``llama-server``, Ollama, TGI, LMDeploy, TensorRT-LLM and MLC-LLM. Each module holds the
engine's wire format and its :class:`~sgflow.adapters.base.Capabilities` (read from the
engine's source at a named version); :mod:`~sgflow.adapters.plan` decides per program step
what each engine enforces, emulates or refuses, :mod:`~sgflow.adapters.emulation` lowers a
constraint to what the engine has, and :mod:`~sgflow.adapters.detect` finds out which
engine a URL points at (the only module here that does I/O).
"""

from __future__ import annotations

from sgflow.adapters.base import Adapter, Capabilities
from sgflow.adapters.llamacpp import LlamaCppAdapter
from sgflow.adapters.lmdeploy import LmdeployAdapter
from sgflow.adapters.mlc import MlcAdapter
from sgflow.adapters.ollama import OllamaAdapter
from sgflow.adapters.sglang import SglangAdapter
from sgflow.adapters.tgi import TgiAdapter
from sgflow.adapters.trtllm import TrtllmAdapter
from sgflow.adapters.vllm import VllmAdapter

__all__ = ["ADAPTERS", "KINDS", "Adapter", "Capabilities", "adapter_for"]

ADAPTERS: dict[str, Adapter] = {
    a.kind: a
    for a in (
        SglangAdapter(),
        VllmAdapter(),
        LlamaCppAdapter(),
        OllamaAdapter(),
        TgiAdapter(),
        LmdeployAdapter(),
        TrtllmAdapter(),
        MlcAdapter(),
    )
}
KINDS = tuple(ADAPTERS)


def adapter_for(kind: str) -> Adapter:
    """The adapter of ``kind``; ``KeyError`` naming the known kinds otherwise."""
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise KeyError(f"unknown engine kind {kind!r}; known: {', '.join(KINDS)}") from None
