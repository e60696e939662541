"""SGLang's native API, spoken by SGLang itself and by sgflow's own engine.

``/generate`` takes the prompt as ``text`` and ``sampling_params`` with ``regex``,
``json_schema`` or ``ebnf``; ``meta_info`` reports ``cached_tokens``. Programs on SGLang run
on :class:`sgflow.execution.sglang_backend.SgflowEndpoint` (SGLang's own frontend backend,
which also scores ``select`` from input log-probabilities); this adapter is the same wire
format for everything else that sends one generation (detection, probes, benches).
"""

from __future__ import annotations

from typing import Any

from sgflow.adapters.base import (
    Adapter,
    Capabilities,
    Completion,
    Enforcement,
    Generation,
    StreamState,
    sampling_fields,
)

__all__ = ["SglangAdapter"]

CAPABILITIES = Capabilities(
    kind="sglang",
    name="SGLang (and sgflow's embedded engine)",
    version="0.4.10",
    source="python/sglang/srt/sampling/sampling_params.py, python/sglang/lang/backend/"
    "runtime_endpoint.py; sgflow/engine/protocol.py",
    regex=Enforcement("native", "sampling_params.regex"),
    json_schema=Enforcement("native", "sampling_params.json_schema"),
    ebnf=Enforcement("native", "sampling_params.ebnf"),
    select=Enforcement("native", "input-token log-probabilities, length-normalised"),
    structural_tag=True,
    prefix_cache="radix cache, on by default",
    cached_tokens="meta_info.cached_tokens",
)

_KEYS = {"json_schema": "json_schema", "regex": "regex", "ebnf": "ebnf"}


class SglangAdapter(Adapter):
    kind = "sglang"
    capabilities = CAPABILITIES
    generate_path = "/generate"

    def body(self, gen: Generation, model: str) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_new_tokens": gen.max_tokens,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
        }
        params.update(sampling_fields(gen, seed=""))
        if gen.constraint != "free":
            params[_KEYS[gen.constraint]] = gen.source
        body: dict[str, Any] = {"text": gen.prompt, "sampling_params": params}
        if gen.stream:
            body["stream"] = True
        return body

    def completion(self, answer: Any) -> Completion:
        meta = answer.get("meta_info") or {}
        finish = meta.get("finish_reason") or {}
        done = Completion(
            str(answer.get("text") or ""),
            "length" if finish.get("type") == "length" else "stop",
            int(meta.get("prompt_tokens") or 0),
            int(meta.get("completion_tokens") or 0),
            int(meta["cached_tokens"]) if meta.get("cached_tokens") is not None else None,
        )
        if isinstance(finish.get("matched"), str):
            done.matched = finish["matched"]
        return done

    def chunk(self, event: Any, state: StreamState) -> None:
        # SGLang streams the whole text so far in every event
        done = self.completion(event)
        state.text = done.text
        if (event.get("meta_info") or {}).get("finish_reason"):
            state.finish, state.matched = done.finish, done.matched
            state.prompt_tokens, state.completion_tokens = (
                done.prompt_tokens,
                done.completion_tokens,
            )
            state.cached_tokens = done.cached_tokens
            state.done = True
