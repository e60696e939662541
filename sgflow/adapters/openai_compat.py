"""The raw-text ``/v1/completions`` that vLLM, LMDeploy, TensorRT-LLM and MLC-LLM share.

Each of those engines adds its constraint fields to OpenAI's completions request in its own
way; :class:`CompletionsAdapter` builds and reads the rest (prompt, sampling, usage,
``finish_reason``, SSE chunks with ``stream_options.include_usage``) once.
"""

from __future__ import annotations

from typing import Any

from sgflow.adapters.base import (
    Adapter,
    Completion,
    Generation,
    StreamState,
    openai_finish,
    openai_usage,
    sampling_fields,
)

__all__ = ["CompletionsAdapter"]


class CompletionsAdapter(Adapter):
    generate_path = "/v1/completions"

    def constraint_fields(self, gen: Generation) -> dict[str, Any]:
        """The request fields that ask the engine to enforce ``gen``'s constraint."""
        raise NotImplementedError

    def body(self, gen: Generation, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "prompt": gen.prompt,
            "max_tokens": gen.max_tokens,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
        }
        body.update(sampling_fields(gen))
        if gen.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if gen.constraint != "free":
            body.update(self.constraint_fields(gen))
        return body

    def completion(self, answer: Any) -> Completion:
        choice = answer["choices"][0]
        done = Completion(str(choice.get("text") or ""), openai_finish(choice.get("finish_reason")))
        openai_usage(answer, done)
        stopped = choice.get("stop_reason")  # vLLM: the stop string that ended it
        if isinstance(stopped, str):
            done.matched = stopped
        return done

    def chunk(self, event: Any, state: StreamState) -> None:
        for choice in event.get("choices") or ():
            state.text += str(choice.get("text") or "")
            if choice.get("finish_reason") is not None:
                state.finish = openai_finish(choice["finish_reason"])
                state.done = True
                if isinstance(choice.get("stop_reason"), str):
                    state.matched = choice["stop_reason"]
        if event.get("usage"):  # the last chunk, with stream_options.include_usage
            openai_usage(event, state)
