"""LMDeploy's ``api_server`` v0.16 (no CPU build here: contract-tested against its source).

Its ``/v1/completions`` has no ``response_format``, so every request goes to
``/v1/chat/completions`` with ``messages`` as one string: LMDeploy then applies no chat
template and takes the string as the prompt, byte for byte. ``response_format`` is
``{type: json_schema, json_schema: {name, schema}}`` or ``{type: regex_schema,
regex_schema}`` (xgrammar on both engines). EBNF is refused. No route returns the
log-probabilities of given prompt tokens (``/get_ppl`` refuses to run with the prefix cache
on), so ``select`` is a generation constrained by a regex of the choices. A stop string is
honoured by the engine only when it is one token: sgflow cuts the text at every stop string
itself. Prefix caching is off unless the server runs with ``--enable-prefix-caching``; chat
usage reports ``prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

from typing import Any

from sgflow.adapters.base import (
    Capabilities,
    Completion,
    Enforcement,
    Generation,
    StreamState,
    openai_finish,
    openai_usage,
)
from sgflow.adapters.openai_compat import CompletionsAdapter

__all__ = ["LmdeployAdapter"]

CAPABILITIES = Capabilities(
    kind="lmdeploy",
    name="LMDeploy",
    version="v0.16.0",
    source="lmdeploy/serve/openai/protocol.py (ChatCompletionRequest, ResponseFormat), "
    "lmdeploy/serve/openai/chat_completions/serving.py",
    regex=Enforcement("native", "response_format {type: regex_schema}"),
    json_schema=Enforcement("native", "response_format {type: json_schema}"),
    ebnf=Enforcement("refused", "LMDeploy's response_format has no grammar type"),
    select=Enforcement("emulated", "a generation constrained by a regex of the choices, greedy"),
    structural_tag=False,
    prefix_cache="--enable-prefix-caching (off by default)",
    cached_tokens="usage.prompt_tokens_details.cached_tokens",
    n=False,
    notes=(
        "TurboMind generates unconstrained when a grammar fails to compile (it only logs "
        "a warning): sgflow's validation after generation is what catches it there",
        "stop strings longer than one token are ignored by LMDeploy; sgflow applies them",
    ),
)


class LmdeployAdapter(CompletionsAdapter):
    kind = "lmdeploy"
    capabilities = CAPABILITIES
    generate_path = "/v1/chat/completions"

    def body(self, gen: Generation, model: str) -> dict[str, Any]:
        body = super().body(gen, model)
        body["messages"] = body.pop("prompt")  # a string: no chat template applied
        body["max_completion_tokens"] = body.pop("max_tokens")
        return body

    def constraint_fields(self, gen: Generation) -> dict[str, Any]:
        if gen.constraint == "json_schema":
            named = {"name": "sgflow", "schema": gen.schema()}
            return {"response_format": {"type": "json_schema", "json_schema": named}}
        if gen.constraint == "regex":
            return {"response_format": {"type": "regex_schema", "regex_schema": gen.source}}
        raise ValueError(f"LMDeploy has no constraint {gen.constraint!r}")

    def completion(self, answer: Any) -> Completion:
        choice = answer["choices"][0]
        content = (choice.get("message") or {}).get("content")
        done = Completion(str(content or ""), openai_finish(choice.get("finish_reason")))
        openai_usage(answer, done)
        return done

    def chunk(self, event: Any, state: StreamState) -> None:
        for choice in event.get("choices") or ():
            state.text += str((choice.get("delta") or {}).get("content") or "")
            if choice.get("finish_reason") is not None:
                state.finish = openai_finish(choice["finish_reason"])
                state.done = True
        if event.get("usage"):
            openai_usage(event, state)
