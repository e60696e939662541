"""The SGLang backend programs run on: ``RuntimeEndpoint`` with two fixes.

- ``chat_template_name`` defaults to ChatML (SmolLM2's format): the frontend would otherwise
  guess from the model path and fall back to a generic template for a ``.gguf`` name.
- EBNF: sglang 0.4.10's ``gen`` has no ``ebnf`` argument and ``to_srt_kwargs`` drops it, so
  the compiler hands EBNF over as a marked ``regex`` and this backend sends it as SGLang's
  ``ebnf`` sampling parameter on the wire.
"""

from __future__ import annotations

from typing import Any

from sglang.lang.backend.runtime_endpoint import RuntimeEndpoint

__all__ = ["SgflowEndpoint", "ebnf_regex"]

_EBNF_MARK = "\x00sgflow-ebnf\x00"


def ebnf_regex(grammar: str) -> str:
    return _EBNF_MARK + grammar


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


class SgflowEndpoint(RuntimeEndpoint):  # type: ignore[misc]
    def __init__(self, base_url: str, *, chat_template_name: str = "chatml", **kwargs: Any) -> None:
        super().__init__(base_url, chat_template_name=chat_template_name, **kwargs)

    def generate(self, s: Any, sampling_params: Any) -> Any:
        _route_ebnf(sampling_params)
        return super().generate(s, sampling_params)

    def generate_stream(self, s: Any, sampling_params: Any) -> Any:
        _route_ebnf(sampling_params)
        return super().generate_stream(s, sampling_params)
