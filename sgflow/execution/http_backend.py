"""The frontend backend for every engine that is not SGLang: one class over any adapter.

:class:`EngineEndpoint` is an SGLang frontend ``BaseBackend``, so programs run on it exactly
as on SGLang: the frontend builds the chat-formatted text, and each ``gen`` sends the whole
text so far as the prompt of one raw-completion request (:mod:`sgflow.adapters`), so the
part runs share is byte-identical and first. On the way:

- the step's constraint is lowered to what the engine enforces
  (:func:`sgflow.adapters.emulation.lower`); a wrapped answer (a regex sent as a JSON
  string schema) is unwrapped before the frontend sees it, and is not streamed as deltas
  (the pieces must add up to the text the step returns, quotes and escapes would not);
- ``select`` is scored by the continuation's length-normalised log-probability where the
  engine returns prompt log-probabilities, and otherwise generated greedily under a
  constraint that admits only the choices (:func:`~sgflow.adapters.emulation.choice_constraint`);
- ``cache_prefix`` (batches warm a shared prefix) sends the prefix with one token to
  generate: every engine that caches prefixes keeps it.

Nothing here trusts the engine: the executor validates every answer afterwards, as on SGLang.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from sglang.lang.backend.base_backend import BaseBackend
from sglang.lang.chat_template import get_chat_template
from sglang.lang.choices import ChoicesDecision, token_length_normalized

from sgflow.adapters.base import Adapter, Completion, Generation, StreamState
from sgflow.adapters.emulation import Lowered, choice_constraint, lower, unwrap
from sgflow.execution.deltas import DeltaSink, DeltaSinks, Pieces, response_lines, stop_strings
from sgflow.execution.sglang_backend import constraint_of

__all__ = ["EngineEndpoint", "EngineRefused"]

_TIMEOUT_S = (10.0, 600.0)  # connect; the longest wait for an answer or the next chunk
_CHOICE_TOKENS = 64  # enough for any choice the checker lets through, in tokens


class EngineRefused(RuntimeError):
    """The engine answered a request with an error status; ``status`` and its words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the engine answered {status}: {message}")
        self.status = status


class EngineEndpoint(DeltaSinks, BaseBackend):  # type: ignore[misc]
    """Programs on the engine at ``url`` (its kind's ``adapter``, serving ``model``)."""

    def __init__(
        self, url: str, adapter: Adapter, model: str, *, chat_template_name: str = "chatml"
    ) -> None:
        BaseBackend.__init__(self)
        self._init_sinks()
        self.url = url.rstrip("/")
        self.adapter = adapter
        self.capabilities = adapter.capabilities
        self.model = model
        self.chat_template = get_chat_template(chat_template_name)
        self.http = requests.Session()

    def get_model_name(self) -> str:
        return self.model

    # -- HTTP --------------------------------------------------------------------------------

    def _post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        stream: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """``headers``: the caller's trace headers (engines that trace, vLLM and SGLang
        among them, continue a ``traceparent``)."""
        if stream:  # a connection of its own: llama-server closes it after an SSE stream
            res = requests.post(
                self.url + path,
                json=body,
                timeout=_TIMEOUT_S,
                stream=True,
                headers={"Connection": "close", **(headers or {})},
            )
        else:
            res = self.http.post(self.url + path, json=body, timeout=_TIMEOUT_S, headers=headers)
        if res.status_code >= 400:
            try:
                said = self.adapter.error_message(res.json())
            except ValueError:
                said = res.text[:500]
            res.close()
            raise EngineRefused(res.status_code, said)
        return res if stream else res.json()

    def complete(
        self,
        gen: Generation,
        sink: DeltaSink | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> Completion:
        """One generation, cut at its first stop string (an engine may ignore some:
        LMDeploy honours only one-token stops, TGI at most four); with ``sink``, streamed
        into it, never past a stop string. Raises when the engine gave up instead of
        finishing (:func:`_finished`)."""
        if sink is None:
            body = self.adapter.body(gen, self.model)
            with self._post(self.adapter.generate_path, body, stream=True, headers=headers) as res:
                done = self.adapter.completion(res.json())
                header = self.adapter.prompt_tokens_header
                if header and not done.prompt_tokens and res.headers.get(header, "").isdigit():
                    done.prompt_tokens = int(res.headers[header])
            return _finished(done, gen.stop)
        streamed = Generation(**{**gen.__dict__, "stream": True})
        path = self.adapter.stream_path or self.adapter.generate_path
        pieces = Pieces(sink, max((len(x) for x in gen.stop), default=0))
        state = StreamState()
        body = self.adapter.body(streamed, self.model)
        with self._post(path, body, stream=True, headers=headers) as res:
            for line in response_lines(res):
                line = line.strip()
                if line.startswith(b"data:"):
                    line = line[5:].strip()
                elif self.adapter.stream_format == "sse":
                    continue
                if not line or line == b"[DONE]":
                    if line:
                        break
                    continue
                event = json.loads(line)
                if isinstance(event, dict) and event.get("error"):
                    raise EngineRefused(200, self.adapter.error_message(event))
                self.adapter.chunk(event, state)
                if not state.done:
                    pieces.update(_cut(state.text, gen.stop)[0])
        if not state.done:
            raise RuntimeError("the engine's stream ended before the generation finished")
        done = _finished(state.completion(), gen.stop)
        pieces.finish(done.text)
        return done

    # -- the frontend's calls ----------------------------------------------------------------

    def generate(self, s: Any, sampling_params: Any) -> tuple[str, dict[str, Any]]:
        kind, source = constraint_of(sampling_params)
        lowered = lower(kind, source, self.capabilities)
        gen = _generation(s.text_, sampling_params, lowered)
        sink = self.sink_for(s)
        done = self.complete(gen, None if lowered.wrapped else sink, headers=self.trace_headers(s))
        text = unwrap(done.text) if lowered.wrapped else done.text
        if lowered.wrapped and sink is not None:
            sink(text, True)
        return text, done.meta_info()

    def generate_stream(self, s: Any, sampling_params: Any) -> Any:
        text, meta = self.generate(s, sampling_params)
        yield text, meta

    def cache_prefix(self, prefix_str: str) -> None:
        self.complete(Generation(prefix_str, max_tokens=1))

    def select(
        self, s: Any, choices: list[str], temperature: float, choices_method: Any = None
    ) -> ChoicesDecision:
        headers = self.trace_headers(s)
        if self.capabilities.select.support == "native":
            method = choices_method or token_length_normalized
            return self._scored(s.text_, choices, method, headers)
        return self._constrained_choice(s.text_, choices, headers)

    def _constrained_choice(
        self, prompt: str, choices: list[str], headers: dict[str, str] | None = None
    ) -> ChoicesDecision:
        """The choice the model writes, greedily, under a constraint admitting only them."""
        lowered = choice_constraint(choices, self.capabilities)
        longest = max(len(c) for c in choices)
        gen = Generation(
            prompt,
            max_tokens=min(_CHOICE_TOKENS, longest + 8),
            constraint=lowered.constraint,
            source=lowered.source,
        )
        done = self.complete(gen, headers=headers)
        text = unwrap(done.text) if lowered.wrapped else done.text
        if text not in choices:
            raise RuntimeError(
                f"the engine answered {text[:80]!r} to a generation constrained to the choices"
            )
        return ChoicesDecision(decision=text, meta_info=done.meta_info())

    def _scored(
        self, prompt: str, choices: list[str], method: Any, headers: dict[str, str] | None = None
    ) -> ChoicesDecision:
        """Each choice scored by the mean log-probability of its tokens after ``prompt``."""
        adapter = self.adapter
        assert adapter.tokenize_path and adapter.score_path
        prefix = adapter.token_count(
            self._post(
                adapter.tokenize_path, adapter.tokenize_body(prompt, self.model), headers=headers
            )
        )

        def score(choice: str) -> list[float | None]:
            answer = self._post(
                adapter.score_path or "",
                adapter.score_body(prompt + choice, self.model),
                headers=headers,
            )
            return adapter.continuation_logprobs(answer, prefix)

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(choices)))) as pool:
            scored = list(pool.map(score, choices))
        if any(not row or None in row for row in scored):
            # a token without a log-probability (TGI: one its prefix cache held): no score
            # can be trusted, so the choice is generated under a constraint instead
            return self._constrained_choice(prompt, choices, headers)
        logprobs = [[float(lp) for lp in row if lp is not None] for row in scored]
        normalized = [sum(lp) / len(lp) for lp in logprobs]
        return method(
            choices=choices,
            normalized_prompt_logprobs=normalized,
            input_token_logprobs=[[(lp, None, None) for lp in row] for row in logprobs],
            output_token_logprobs=[[] for _ in choices],
            unconditional_token_logprobs=None,
        )


def _cut(text: str, stop: tuple[str, ...]) -> tuple[str, str | None]:
    """``text`` up to its first stop string, and that string (None where there is none)."""
    cuts = [(text.find(s), s) for s in stop if s and s in text]
    if not cuts:
        return text, None
    at, matched = min(cuts)
    return text[:at], matched


def _finished(done: Completion, stop: tuple[str, ...]) -> Completion:
    """``done`` cut at its first stop string; raises when the engine gave up instead of
    finishing."""
    if done.finish == "abort":
        raise RuntimeError("the engine ended the generation without finishing it")
    text, matched = _cut(done.text, stop)
    if matched is not None:
        done.text, done.finish, done.matched = text, "stop", matched
    return done


def _generation(prompt: str, params: Any, lowered: Lowered) -> Generation:
    return Generation(
        prompt=prompt,
        max_tokens=int(params.max_new_tokens),
        temperature=float(params.temperature),
        top_p=float(params.top_p),
        stop=tuple(stop_strings(params.stop)),
        frequency_penalty=float(params.frequency_penalty or 0.0),
        presence_penalty=float(params.presence_penalty or 0.0),
        constraint=lowered.constraint,
        source=lowered.source,
    )
