"""Hugging Face TGI (no CPU build here: contract-tested against its source).

``/generate`` and ``/generate_stream`` take ``inputs`` (the raw prompt) and ``parameters``;
``parameters.grammar`` is ``{type: json, value: schema}`` or ``{type: regex, value}``
(outlines-core). EBNF is refused. ``select`` is scored from the prefill: with
``decoder_input_details`` every input token comes back with its log-probability. TGI
rejects ``temperature: 0`` and ``top_p: 1``: greedy is ``do_sample: false``. Its prefix
cache (v3) is on by default; responses report no cached-token count.
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

__all__ = ["TgiAdapter"]

# outlines-core's json_schema → regex (the keywords its builder reads)
_OUTLINES_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "prefixItems",
        "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
        "pattern", "format", "minLength", "maxLength",
    }
)  # fmt: skip
CAPABILITIES = Capabilities(
    kind="tgi",
    name="Hugging Face TGI",
    version="v3.3.7",
    source="router/src/lib.rs (GenerateParameters, GrammarType, Details, Info), "
    "router/src/validation.rs, router/src/server.rs",
    regex=Enforcement("native", "parameters.grammar {type: regex}"),
    json_schema=Enforcement("native", "parameters.grammar {type: json}"),
    ebnf=Enforcement("refused", "TGI's grammar takes only json or regex"),
    select=Enforcement("native", "decoder_input_details: prefill log-probabilities"),
    structural_tag=False,
    prefix_cache="on by default (v3 prefix caching)",
    cached_tokens=None,
    n=False,
    json_keywords=_OUTLINES_KEYWORDS,
    json_needs_properties=True,
    notes=(
        "select needs the server started with --enable-prefill-logprobs; prompt tokens "
        "held by the prefix cache come back without one, and select then falls back to a "
        "generation constrained to the choices",
        "at most 4 stop strings (max_stop_sequences) are sent; sgflow applies the rest",
    ),
)

_FINISH = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}
# the launcher's default --max-stop-sequences: validation.rs answers 422 to a request with
# more; the rest are applied by sgflow, which cuts the text at every stop string it was given
MAX_STOP_SEQUENCES = 4


class TgiAdapter(Adapter):
    kind = "tgi"
    capabilities = CAPABILITIES
    generate_path = "/generate"
    stream_path = "/generate_stream"
    tokenize_path = "/tokenize"
    score_path = "/generate"
    # /generate's body has no prompt count (only prefill, with decoder_input_details)
    prompt_tokens_header = "x-prompt-tokens"

    def body(self, gen: Generation, model: str) -> dict[str, Any]:
        parameters: dict[str, Any] = {"max_new_tokens": gen.max_tokens, "details": True}
        if gen.temperature > 0:
            parameters.update(do_sample=True, temperature=gen.temperature)
            if 0 < gen.top_p < 1:
                parameters["top_p"] = gen.top_p
        else:
            parameters["do_sample"] = False
        parameters.update(sampling_fields(gen, presence_penalty=""))
        if gen.stop:
            parameters["stop"] = list(gen.stop[:MAX_STOP_SEQUENCES])
        if gen.constraint == "json_schema":
            parameters["grammar"] = {"type": "json", "value": gen.schema()}
        elif gen.constraint == "regex":
            parameters["grammar"] = {"type": "regex", "value": gen.source}
        elif gen.constraint != "free":
            raise ValueError(f"TGI has no constraint {gen.constraint!r}")
        return {"inputs": gen.prompt, "parameters": parameters}

    def completion(self, answer: Any) -> Completion:
        if isinstance(answer, list):  # /generate answers a list when given a list
            answer = answer[0]
        done = Completion(str(answer.get("generated_text") or ""), "stop")
        _details(answer.get("details"), done)
        return done

    def chunk(self, event: Any, state: StreamState) -> None:
        token = event.get("token") or {}
        if not token.get("special"):
            state.text += str(token.get("text") or "")
        if event.get("generated_text") is not None:
            state.text = str(event["generated_text"])
            _details(event.get("details"), state)
            state.done = True

    def tokenize_body(self, text: str, model: str) -> dict[str, Any]:
        return {"inputs": text}

    def token_count(self, answer: Any) -> int:
        return len(answer)

    def score_body(self, text: str, model: str) -> dict[str, Any]:
        parameters = {"max_new_tokens": 1, "details": True, "decoder_input_details": True}
        return {"inputs": text, "parameters": {**parameters, "do_sample": False}}

    def continuation_logprobs(self, answer: Any, prompt_tokens: int) -> list[float | None]:
        if isinstance(answer, list):
            answer = answer[0]
        prefill = (answer.get("details") or {}).get("prefill") or []
        # null for the first token and for prompt tokens the prefix cache held
        rows = prefill[prompt_tokens:]
        return [None if t.get("logprob") is None else float(t["logprob"]) for t in rows]


def _details(details: Any, into: Completion | StreamState) -> None:
    if not isinstance(details, dict):
        return
    into.finish = _FINISH.get(str(details.get("finish_reason")), "abort")
    into.completion_tokens = int(details.get("generated_tokens") or 0)
    prefill = details.get("prefill")
    if isinstance(prefill, list) and prefill:
        into.prompt_tokens = len(prefill)
    elif details.get("input_length") is not None:  # the last event of a stream
        into.prompt_tokens = int(details["input_length"])
