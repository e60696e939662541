"""SGLang's native ``/generate`` request, validated, and its response pieces.

The models accept every field SGLang's ``GenerateReqInput`` and ``SamplingParams`` define
(``sglang-router`` re-serialises requests and always sends some of them), refuse unknown
ones, and refuse known ones this engine cannot honour instead of silently ignoring them.
``expand`` turns one request into the flat list of sequences the scheduler runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sgflow.engine.errors import BadRequest

__all__ = [
    "MAX_BATCH",
    "MAX_N",
    "ConstraintSpec",
    "GenerateRequest",
    "SamplingParams",
    "SeqSpec",
    "expand",
    "finish_abort",
    "finish_length",
    "finish_stop",
    "parse_generate",
]

MAX_N = 16
MAX_BATCH = 64
MAX_STOP = 16
MAX_TOP_LOGPROBS = 20


class SamplingParams(BaseModel):
    """SGLang's sampling parameters; defaults are SGLang's."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_new_tokens: int | None = Field(default=128, ge=0)
    min_new_tokens: int = Field(default=0, ge=0)
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = -1
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=2.0)
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    n: int = Field(default=1, ge=1, le=MAX_N)
    regex: str | None = None
    json_schema: str | dict[str, Any] | None = None
    ebnf: str | None = None
    structural_tag: None = None
    logit_bias: dict[str, float] | None = None
    sampling_seed: int | None = None
    custom_params: None = None
    stream_interval: int | None = None

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("top_k must be -1 (disabled) or a positive integer")
        return value

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        items = [value] if isinstance(value, str) else (value or [])
        if len(items) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings are allowed")
        if any(not s for s in items):
            raise ValueError("stop strings must not be empty")
        return value

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def constraint(self) -> ConstraintSpec | None:
        given = [
            (kind, value)
            for kind, value in (
                ("regex", self.regex),
                ("json_schema", self.json_schema),
                ("ebnf", self.ebnf),
            )
            if value is not None
        ]
        if not given:
            return None
        if len(given) > 1:
            names = ", ".join(kind for kind, _ in given)
            raise BadRequest(
                f"only one constraint may be given per request, got {names}",
                field="sampling_params",
                code="grammar.conflict",
            )
        kind, value = given[0]
        if kind == "json_schema" and not isinstance(value, str):
            value = json.dumps(value)
        assert isinstance(value, str)
        return ConstraintSpec(kind=kind, source=value)  # type: ignore[arg-type]


# Fields of SGLang's GenerateReqInput that this engine accepts but that must stay unset:
# honouring them needs things a CPU llama.cpp engine does not have.
_UNSUPPORTED_WHEN_SET = (
    "input_embeds",
    "image_data",
    "audio_data",
    "video_data",
    "lora_path",
    "lora_id",
    "session_params",
    "custom_logit_processor",
    "token_ids_logprob",
    "modalities",
    "bootstrap_host",
    "bootstrap_port",
    "bootstrap_room",
    "data_parallel_rank",
)


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | list[str] | None = None
    input_ids: list[int] | list[list[int]] | None = None
    sampling_params: SamplingParams | list[SamplingParams] | None = None
    rid: str | list[str] | None = None
    return_logprob: bool | list[bool] = False
    logprob_start_len: int | list[int] = -1
    top_logprobs_num: int | list[int] = 0
    return_text_in_logprobs: bool = False
    stream: bool = False
    # Sent by sglang-router or SGLang clients; accepted, no effect here.
    model: str | None = None
    log_metrics: bool = True
    background: bool = False
    no_logs: bool = False
    routing_key: str | None = None
    return_hidden_states: Literal[False] = False
    return_bytes: Literal[False] = False
    return_entropy: Literal[False] = False
    input_embeds: None = None
    image_data: None = None
    audio_data: None = None
    video_data: None = None
    lora_path: None = None
    lora_id: None = None
    session_params: None = None
    custom_logit_processor: None = None
    token_ids_logprob: None = None
    modalities: None = None
    bootstrap_host: None = None
    bootstrap_port: None = None
    bootstrap_room: None = None
    data_parallel_rank: None = None


@dataclass(frozen=True)
class ConstraintSpec:
    kind: Literal["regex", "json_schema", "ebnf"]
    source: str


@dataclass
class SeqSpec:
    """One sequence to generate: a prompt (text or ids) and its parameters."""

    index: int
    prompt_index: int
    rid: str | None
    text: str | None
    input_ids: list[int] | None
    params: SamplingParams
    return_logprob: bool
    logprob_start_len: int
    top_logprobs_num: int
    return_text_in_logprobs: bool = False


def parse_generate(body: Any) -> GenerateRequest:
    """Validate a decoded JSON body; raise :class:`BadRequest` naming the offending field."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", field="")
    try:
        return GenerateRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"] if not _is_union_tag(part))
        message = first["msg"]
        top = loc.split(".")[0]
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        elif first["type"] in ("none_required", "literal_error") and (
            top in _UNSUPPORTED_WHEN_SET
            or top.startswith("return_")
            or loc.endswith(("structural_tag", "custom_params"))
        ):
            message = "not supported by the sgflow CPU engine; leave it unset"
        raise BadRequest(f"{loc or 'body'}: {message}", field=loc) from None


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the union member's type name into error locations ("str", "list[str]",
    # "SamplingParams"); they mean nothing to the client.
    return isinstance(part, str) and (
        part in ("str", "int", "bool", "SamplingParams", "dict[str,any]")
        or part.startswith(("list[", "dict["))
    )


def _per_prompt(value: Any, count: int, name: str) -> list[Any]:
    if isinstance(value, list):
        if len(value) != count:
            raise BadRequest(
                f"{name} has {len(value)} entries but there are {count} prompts", field=name
            )
        return value
    return [value] * count


def expand(req: GenerateRequest) -> tuple[list[SeqSpec], bool]:
    """Flatten a request into sequences; the flag says whether the answer is a list."""
    if (req.text is None) == (req.input_ids is None):
        raise BadRequest("exactly one of text or input_ids is required", field="text")
    texts: list[str | None]
    ids: list[list[int] | None]
    if req.text is not None:
        is_batch = isinstance(req.text, list)
        texts = list(req.text) if isinstance(req.text, list) else [req.text]
        ids = [None] * len(texts)
        field = "text"
    else:
        assert req.input_ids is not None
        is_batch = bool(req.input_ids) and isinstance(req.input_ids[0], list)
        raw: list[Any] = list(req.input_ids) if is_batch else [req.input_ids]
        ids = raw
        texts = [None] * len(ids)
        field = "input_ids"
    count = len(texts)
    if count == 0:
        raise BadRequest(f"{field} must not be empty", field=field)
    if count > MAX_BATCH:
        raise BadRequest(
            f"{field} has {count} prompts; at most {MAX_BATCH} per request", field=field
        )
    params = _per_prompt(req.sampling_params or SamplingParams(), count, "sampling_params")
    rids = _per_prompt(req.rid, count, "rid")
    return_logprob = _per_prompt(req.return_logprob, count, "return_logprob")
    start_len = _per_prompt(req.logprob_start_len, count, "logprob_start_len")
    top_num = _per_prompt(req.top_logprobs_num, count, "top_logprobs_num")
    specs: list[SeqSpec] = []
    for i in range(count):
        if not 0 <= top_num[i] <= MAX_TOP_LOGPROBS:
            raise BadRequest(
                f"top_logprobs_num must be between 0 and {MAX_TOP_LOGPROBS}",
                field="top_logprobs_num",
            )
        p: SamplingParams = params[i]
        for j in range(p.n):
            rid = rids[i]
            if rid is not None and p.n > 1:
                rid = f"{rid}-{j}"
            specs.append(
                SeqSpec(
                    index=len(specs),
                    prompt_index=i,
                    rid=rid,
                    text=texts[i],
                    input_ids=ids[i],
                    params=p,
                    return_logprob=return_logprob[i],
                    logprob_start_len=start_len[i],
                    top_logprobs_num=top_num[i],
                    return_text_in_logprobs=req.return_text_in_logprobs,
                )
            )
    return specs, is_batch or len(specs) > 1


def finish_stop(matched: str | int) -> dict[str, Any]:
    return {"type": "stop", "matched": matched}


def finish_length(length: int) -> dict[str, Any]:
    return {"type": "length", "length": length}


def finish_abort(message: str, code: str) -> dict[str, Any]:
    """SGLang's abort finish reason, with the registered error ``code`` (``sgflow.errors``)
    that says why: the generation ended without finishing, and its text is not an answer."""
    return {"type": "abort", "message": message, "code": code}
