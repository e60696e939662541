"""MLC-LLM's ``mlc_llm serve`` (no CPU build here: contract-tested against its source).

``/v1/completions`` takes ``response_format: {type: json_object, schema}`` (the schema as
a JSON string; xgrammar). That is its only constraint: a regex is sent as a JSON string
schema with that ``pattern`` and unwrapped, ``select`` as a string ``enum``, unwrapped;
EBNF is refused. Prefix caching is on by default; usage reports no cached-token count.
"""

from __future__ import annotations

from typing import Any

from sgflow.adapters.base import Capabilities, Enforcement, Generation
from sgflow.adapters.openai_compat import CompletionsAdapter

__all__ = ["MlcAdapter"]

CAPABILITIES = Capabilities(
    kind="mlc",
    name="MLC-LLM",
    version="v0.20.0",
    source="python/mlc_llm/protocol/openai_api_protocol.py (CompletionRequest, "
    "RequestResponseFormat)",
    regex=Enforcement("emulated", "response_format json_object {type: string, pattern}, unwrapped"),
    json_schema=Enforcement("native", "response_format {type: json_object, schema}"),
    ebnf=Enforcement("refused", "MLC-LLM's response_format takes only a JSON Schema"),
    select=Enforcement("emulated", "response_format {enum: choices}, greedy, then unwrapped"),
    structural_tag=False,
    prefix_cache="--prefix-cache-mode radix (the default)",
    cached_tokens=None,
)


class MlcAdapter(CompletionsAdapter):
    kind = "mlc"
    capabilities = CAPABILITIES
    health_path = "/v1/models"  # MLC-LLM has no /health

    def constraint_fields(self, gen: Generation) -> dict[str, Any]:
        if gen.constraint == "json_schema":
            return {"response_format": {"type": "json_object", "schema": gen.source}}
        raise ValueError(f"MLC-LLM has no constraint {gen.constraint!r}")
