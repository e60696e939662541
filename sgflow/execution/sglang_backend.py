"""The SGLang backend programs run on: ``RuntimeEndpoint`` with three fixes.

- ``chat_template_name`` defaults to ChatML (SmolLM2's format): the frontend would otherwise
  guess from the model path and fall back to a generic template for a ``.gguf`` name.
- list prompts (``select``): sent one request per item, which sglang-router accepts.
- EBNF: sglang 0.4.10's ``gen`` has no ``ebnf`` argument and ``to_srt_kwargs`` drops it, so
  the compiler hands EBNF over as a marked ``regex`` and this backend sends it as SGLang's
  ``ebnf`` sampling parameter on the wire.

And one addition: **streamed generation with a delta sink**. While a sink is registered for
a state (:meth:`SgflowEndpoint.deltas`), ``generate`` uses the streaming ``/generate``
(``"stream": true``), hands the sink each piece of new text, and returns what the plain call
returns (the final text and ``meta_info``). A sink that raises stops the generation: the
HTTP response is closed, and the engine cancels the sequence when its client goes away.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from sglang.global_config import global_config
from sglang.lang.backend.runtime_endpoint import RuntimeEndpoint

from sgflow.execution.deltas import DeltaSink, DeltaSinks, Pieces, response_lines, stop_strings

__all__ = ["DeltaSink", "SgflowEndpoint", "constraint_of", "ebnf_regex"]

_EBNF_MARK = "\x00sgflow-ebnf\x00"
_PASSED_THROUGH = (
    "return_logprob",
    "logprob_start_len",
    "top_logprobs_num",
    "return_text_in_logprobs",
)
_STREAM_TIMEOUT_S = (10.0, 600.0)  # connect; the longest wait for the next chunk


def ebnf_regex(grammar: str) -> str:
    return _EBNF_MARK + grammar


def constraint_of(sampling_params: Any) -> tuple[str, str | None]:
    """The constraint kind (``free``, ``regex``, ``json_schema``, ``ebnf``) and source of a
    generation's sampling parameters, as the executor set them."""
    regex = getattr(sampling_params, "regex", None)
    if isinstance(regex, str):
        if regex.startswith(_EBNF_MARK):
            return "ebnf", regex[len(_EBNF_MARK) :]
        return "regex", regex
    schema = getattr(sampling_params, "json_schema", None)
    if isinstance(schema, str):
        return "json_schema", schema
    return "free", None


def _route_ebnf(sampling_params: Any) -> None:
    regex = getattr(sampling_params, "regex", None)
    if not (isinstance(regex, str) and regex.startswith(_EBNF_MARK)):
        return
    grammar = regex[len(_EBNF_MARK) :]
    sampling_params.regex = None
    base = sampling_params.to_srt_kwargs

    def to_srt_kwargs() -> dict[str, Any]:
        return {**base(), "ebnf": grammar}

    sampling_params.to_srt_kwargs = to_srt_kwargs


class SgflowEndpoint(DeltaSinks, RuntimeEndpoint):  # type: ignore[misc]
    def __init__(self, base_url: str, *, chat_template_name: str = "chatml", **kwargs: Any) -> None:
        super().__init__(base_url, chat_template_name=chat_template_name, **kwargs)
        self._init_sinks()

    def generate(self, s: Any, sampling_params: Any) -> Any:
        _route_ebnf(sampling_params)
        sink = self.sink_for(s)
        if sink is None:
            return super().generate(s, sampling_params)
        return self._generate_streamed(s, sampling_params, sink)

    def generate_stream(self, s: Any, sampling_params: Any) -> Any:
        _route_ebnf(sampling_params)
        return super().generate_stream(s, sampling_params)

    def _generate_http_request(self, s: Any, data: dict[str, Any]) -> Any:
        """A list prompt (``select`` scores its choices with one) is sent as one request per
        item: sglang-router 0.3.2 answers 422 to list ``text``, and single requests that
        share a prefix are routed to the same engine and batched there anyway."""
        key = "text" if isinstance(data.get("text"), list) else None
        ids = data.get("input_ids")
        if key is None and isinstance(ids, list) and ids and isinstance(ids[0], list):
            key = "input_ids"
        if key is None:
            return self._post_generate(s, data)
        items = data[key]

        def one(item: Any) -> Any:
            return self._post_generate(s, {**data, key: item})

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(items)))) as pool:
            return list(pool.map(one, items))

    def _post_generate(self, s: Any, data: dict[str, Any]) -> Any:
        """``POST /generate``, not streamed, with the state's trace headers."""
        self._add_images(s, data)
        res = requests.post(
            self.base_url + "/generate",
            json=data,
            headers={**self._auth(), **self.trace_headers(s)},
            timeout=_STREAM_TIMEOUT_S,
            verify=self.verify if self.verify is not None else True,
        )
        self._assert_success(res)
        return res.json()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _generate_streamed(
        self, s: Any, sampling_params: Any, sink: DeltaSink
    ) -> tuple[str, dict[str, Any]]:
        """``generate`` over the streaming API: the same request plus ``"stream": true``."""
        self._handle_dtype_to_regex(sampling_params)
        data = self._payload(s, sampling_params)
        pieces = Pieces(
            sink,
            max((len(x) for x in stop_strings(getattr(sampling_params, "stop", None))), default=0),
        )
        with requests.post(
            self.base_url + "/generate",
            json=data,
            stream=True,
            headers={**self._auth(), **self.trace_headers(s)},
            timeout=_STREAM_TIMEOUT_S,
            verify=self.verify if self.verify is not None else True,
        ) as res:
            self._assert_success(res)
            text, meta = _read_stream(res, pieces)
        pieces.finish(text)
        return text, meta

    def _payload(self, s: Any, sampling_params: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "text": s.text_,
            "sampling_params": {
                "skip_special_tokens": global_config.skip_special_tokens_in_output,
                "spaces_between_special_tokens": global_config.spaces_between_special_tokens_in_out,
                **sampling_params.to_srt_kwargs(),
            },
            "stream": True,
        }
        for item in _PASSED_THROUGH:
            value = getattr(sampling_params, item, None)
            if value is not None:
                data[item] = value
        self._add_images(s, data)
        return data


def _read_stream(res: requests.Response, pieces: Pieces) -> tuple[str, dict[str, Any]]:
    """The final text and meta_info of an SSE ``/generate`` stream (cumulative texts),
    feeding ``pieces`` on the way; raises ``RuntimeError`` if it ends without a result."""
    text: str | None = None
    meta: dict[str, Any] = {}
    for line in response_lines(res):
        if not line.startswith(b"data:"):
            continue
        body = line[5:].strip()
        if body == b"[DONE]":
            break
        chunk = json.loads(body)
        text, meta = chunk["text"], chunk["meta_info"]
        if not meta.get("finish_reason"):
            pieces.update(text)
    if text is None or not meta.get("finish_reason"):
        raise RuntimeError("the engine's stream ended before the generation finished")
    return text, meta
