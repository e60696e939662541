"""llama.cpp's ``llama-server`` (the sources vendored in llama-cpp-python 0.3.36).

``/completion`` takes a raw prompt with ``json_schema`` (converted to GBNF by the server's
``json-schema-to-grammar``) or a GBNF ``grammar``; it has no regex field, so a regex is
sent as a JSON string schema whose ``pattern`` is the regex (the converter turns patterns
into GBNF exactly) and the string is unwrapped. EBNF is translated to GBNF where the
translation is exact (:mod:`sgflow.adapters.gbnf`). It returns no log-probabilities of
prompt tokens, so ``select`` is a generation constrained to the choices: the greedy path
through the choices' tokens, not their length-normalised likelihood. ``cache_prompt`` is
on by default and ``timings.cache_n`` reports the prompt tokens taken from the cache.
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

__all__ = ["LlamaCppAdapter"]

CAPABILITIES = Capabilities(
    kind="llamacpp",
    name="llama.cpp llama-server",
    version="llama-cpp-python 0.3.36 vendor/llama.cpp",
    source="tools/server/server.cpp, tools/server/README.md, common/json-schema-to-grammar.cpp",
    regex=Enforcement("emulated", "json_schema {type: string, pattern}, then unwrapped"),
    json_schema=Enforcement("native", "json_schema (json-schema-to-grammar → GBNF)"),
    ebnf=Enforcement("emulated", "translated to GBNF where exact, else refused"),
    select=Enforcement("emulated", "a generation constrained to the choices (GBNF), greedy"),
    structural_tag=False,
    prefix_cache="cache_prompt (on by default), per slot",
    cached_tokens="timings.cache_n",
    n=False,
    json_keywords=LLAMA_JSON_KEYWORDS,
)

_FINISH = {"limit": "length", "eos": "stop", "word": "stop"}


class LlamaCppAdapter(DeltaAdapter):
    kind = "llamacpp"
    capabilities = CAPABILITIES
    text_field = "content"
    done_field = "stop"
    generate_path = "/completion"
    tokenize_path = "/tokenize"

    def body(self, gen: Generation, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": gen.prompt,
            "n_predict": gen.max_tokens,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
            "cache_prompt": True,
            "stream": gen.stream,
        }
        body.update(sampling_fields(gen))
        if gen.constraint == "json_schema":
            body["json_schema"] = gen.schema()
        elif gen.constraint == "ebnf":
            body["grammar"] = gen.source
        elif gen.constraint != "free":
            raise ValueError(f"llama-server has no constraint {gen.constraint!r}")
        return body

    def final(self, answer: dict[str, Any], into: Completion | StreamState) -> None:
        into.finish = _FINISH.get(str(answer.get("stop_type")), "abort")
        if answer.get("stop_type") == "word" and answer.get("stopping_word"):
            into.matched = str(answer["stopping_word"])
        into.completion_tokens = int(answer.get("tokens_predicted") or 0)
        into.prompt_tokens = int(answer.get("tokens_evaluated") or 0)
        timings = answer.get("timings")
        if isinstance(timings, dict) and timings.get("cache_n") is not None:
            into.cached_tokens = int(timings["cache_n"])

    def tokenize_body(self, text: str, model: str) -> dict[str, Any]:
        return {"content": text, "add_special": False, "parse_special": True}

    def token_count(self, answer: Any) -> int:
        return len(answer["tokens"])
