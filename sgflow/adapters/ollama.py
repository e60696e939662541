"""Ollama's native API (no CPU-free way to run it here: contract-tested against its source).

``/api/generate`` with ``raw: true`` sends the prompt as it is (no template of Ollama's
own), ``options`` carry the sampling settings and ``format`` a JSON Schema: Ollama's only
constraint, converted to a grammar by llama.cpp's ``json-schema-to-grammar``. A regex is
therefore sent as a JSON string schema with that ``pattern`` and unwrapped; ``select`` as a
string ``enum`` of the choices, unwrapped; EBNF is refused. Streams are NDJSON. Prompt
caching is automatic per loaded model; Ollama reports no cached-token count
(``prompt_eval_count`` counts the prompt tokens it evaluated).
"""

from __future__ import annotations

from typing import Any

from sgflow.adapters.base import (
    LLAMA_JSON_KEYWORDS,
    Capabilities,
    Completion,
    DeltaAdapter,
    Enforcement,
    Generation,
    StreamState,
    sampling_fields,
)

__all__ = ["OllamaAdapter"]

CAPABILITIES = Capabilities(
    kind="ollama",
    name="Ollama",
    version="v0.32.15",
    source="api/types.go (GenerateRequest, GenerateResponse, Options), server/routes.go, "
    "llm/llama_server.go",
    regex=Enforcement("emulated", "format {type: string, pattern}, then unwrapped"),
    json_schema=Enforcement("native", "format (a JSON Schema)"),
    ebnf=Enforcement("refused", "Ollama takes only a JSON Schema as format"),
    select=Enforcement("emulated", "format {enum: choices}, greedy, then unwrapped"),
    structural_tag=False,
    prefix_cache="always on (cache_prompt on every runner request)",
    cached_tokens=None,
    n=False,
    notes=(
        "prompt_eval_count includes cached tokens: no cached count is reported",
        "models on the MLX runner ignore format: run sgflow on llama.cpp-runner models",
    ),
    json_keywords=LLAMA_JSON_KEYWORDS,
)

_FINISH = {"length": "length", "stop": "stop"}


class OllamaAdapter(DeltaAdapter):
    kind = "ollama"
    capabilities = CAPABILITIES
    text_field = "response"
    done_field = "done"
    generate_path = "/api/generate"
    health_path = "/api/version"
    stream_format = "ndjson"

    def body(self, gen: Generation, model: str) -> dict[str, Any]:
        options: dict[str, Any] = {
            "num_predict": gen.max_tokens,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
        }
        options.update(sampling_fields(gen))
        body: dict[str, Any] = {
            "model": model,
            "prompt": gen.prompt,
            "raw": True,
            "stream": gen.stream,
            "options": options,
        }
        if gen.constraint == "json_schema":
            body["format"] = gen.schema()
        elif gen.constraint != "free":
            raise ValueError(f"Ollama has no constraint {gen.constraint!r}")
        return body

    def final(self, answer: dict[str, Any], into: Completion | StreamState) -> None:
        into.finish = _FINISH.get(str(answer.get("done_reason")), "abort")
        into.prompt_tokens = int(answer.get("prompt_eval_count") or 0)
        into.completion_tokens = int(answer.get("eval_count") or 0)
