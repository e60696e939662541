"""TensorRT-LLM's ``trtllm-serve`` (GPU only: contract-tested against its source).

``/v1/completions`` takes ``response_format`` of type ``json`` (with ``schema``), ``regex``,
``ebnf`` or ``structural_tag``, enforced when the server runs with a guided-decoding
backend (``guided_decoding_backend: xgrammar`` in ``--extra_llm_api_options``); without
one the server refuses constrained requests, which sgflow reports as the engine's error.
``select`` is a generation constrained by a regex of the choices. KV-cache block reuse is
on by default; ``usage.prompt_tokens_details.cached_tokens`` is read where present.
"""

from __future__ import annotations

from typing import Any

from sgflow.adapters.base import Capabilities, Enforcement, Generation
from sgflow.adapters.openai_compat import CompletionsAdapter

__all__ = ["TrtllmAdapter"]

CAPABILITIES = Capabilities(
    kind="trtllm",
    name="TensorRT-LLM",
    version="main-line 2026 (openai_protocol.py @ 0076e939)",
    source="tensorrt_llm/serve/openai_protocol.py (CompletionRequest, ResponseFormat)",
    regex=Enforcement("native", "response_format {type: regex}"),
    json_schema=Enforcement("native", "response_format {type: json, schema}"),
    ebnf=Enforcement("native", "response_format {type: ebnf}"),
    select=Enforcement("emulated", "a generation constrained by a regex of the choices, greedy"),
    structural_tag=True,
    prefix_cache="KV-cache block reuse (on by default)",
    cached_tokens="usage.prompt_tokens_details.cached_tokens",
    notes=(
        "constraints need guided_decoding_backend: xgrammar in the --config YAML",
        "unknown request fields are refused (extra=forbid): no prompt logprobs over HTTP",
    ),
)


class TrtllmAdapter(CompletionsAdapter):
    kind = "trtllm"
    capabilities = CAPABILITIES

    def body(self, gen: Generation, model: str) -> dict[str, Any]:
        # the prompt is already formatted; completions add BOS unless told not to
        return {**super().body(gen, model), "add_special_tokens": False}

    def constraint_fields(self, gen: Generation) -> dict[str, Any]:
        if gen.constraint == "json_schema":
            return {"response_format": {"type": "json", "schema": gen.schema()}}
        if gen.constraint == "regex":
            return {"response_format": {"type": "regex", "regex": gen.source}}
        if gen.constraint == "ebnf":
            return {"response_format": {"type": "ebnf", "ebnf": gen.source}}
        raise ValueError(f"TensorRT-LLM has no constraint {gen.constraint!r}")
