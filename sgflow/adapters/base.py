"""The one interface every engine adapter implements, and what each engine can do.

An adapter is pure: it turns a :class:`Generation` (an already chat-formatted prompt,
sampling settings and at most one constraint, in a kind the engine enforces) into the body
its engine's raw-completion endpoint expects, and the engine's answers back into a
:class:`Completion`. :mod:`sgflow.execution.http_backend` sends the requests and
:mod:`sgflow.adapters.detect` asks engines what they are; nothing here does I/O.

Every prompt is sent as text, byte for byte as the program's frontend built it, so the part
that runs of a program share is identical and first on every engine that caches prefixes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

__all__ = [
    "FEATURES",
    "Adapter",
    "Capabilities",
    "Completion",
    "Enforcement",
    "Generation",
    "Probe",
    "StreamState",
]

Support = Literal["native", "emulated", "refused"]
# what a program step can ask of an engine: its constraint kinds, and `select`
FEATURES = ("regex", "json_schema", "ebnf", "select")


@dataclass(frozen=True)
class Enforcement:
    """How sgflow gets one feature from an engine: ``native`` (the engine enforces it while
    decoding), ``emulated`` (through another feature of the engine, exactly: ``how`` says
    which) or ``refused`` (a step that needs it does not run on this engine)."""

    support: Support
    how: str


@dataclass(frozen=True)
class Capabilities:
    """What one kind of engine offers, read from its own source at ``version``
    (``source`` names the files). ``structural_tag`` is reported, not used by programs."""

    kind: str
    name: str
    version: str
    source: str
    regex: Enforcement
    json_schema: Enforcement
    ebnf: Enforcement
    select: Enforcement
    structural_tag: bool
    prefix_cache: str  # how the engine's prefix cache is switched on
    cached_tokens: str | None  # the response field that reports reused prompt tokens
    streaming: bool = True
    n: bool = True
    stop: bool = True
    seed: bool = True
    # the JSON Schema keywords the engine's grammar converter enforces; None: xgrammar's
    # (sgflow.grammars.enforcement's table, which its tests check against xgrammar itself)
    json_keywords: frozenset[str] | None = None
    json_needs_properties: bool = False  # the engine refuses a schema without top-level properties
    notes: tuple[str, ...] = ()

    def enforcement(self, feature: str) -> Enforcement:
        if feature not in FEATURES:
            raise KeyError(feature)
        found: Enforcement = getattr(self, feature)
        return found

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["json_keywords"] = sorted(self.json_keywords) if self.json_keywords else None
        return body


# json-schema-to-grammar.cpp (llama.cpp; Ollama calls the same converter)
LLAMA_JSON_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "pattern",
        "format",
        "minLength",
        "maxLength",
    }
)  # fmt: skip  (prefixItems is broken there, minimum/maximum hold for integers only)


@dataclass(frozen=True)
class Generation:
    """One generation request. ``constraint`` is what the engine is asked to enforce
    (``free``, ``regex``, ``json_schema``: ``source`` is the schema's JSON text, ``ebnf``:
    a grammar in the engine's own dialect)."""

    prompt: str
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    constraint: str = "free"
    source: str | None = None
    stream: bool = False

    def schema(self) -> Any:
        assert self.constraint == "json_schema" and self.source is not None
        return json.loads(self.source)


@dataclass
class Completion:
    """An engine's answer: ``finish`` is ``stop`` (end of sequence or a stop string,
    ``matched`` when the engine says which), ``length`` (``max_tokens`` reached) or
    ``abort`` (the engine gave up: the text is not a finished answer);
    ``cached_tokens`` is None where the engine does not say."""

    text: str
    finish: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None
    matched: str | None = None

    def meta_info(self) -> dict[str, Any]:
        """The ``meta_info`` an SGLang engine returns, which the executor reads."""
        finish: dict[str, Any] = {"type": self.finish}
        if self.finish == "length":
            finish["length"] = self.completion_tokens
        elif self.matched is not None:
            finish["matched"] = self.matched
        return {
            "finish_reason": finish,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens or 0,
        }


@dataclass
class StreamState:
    """What a stream has said so far: the adapter's :meth:`Adapter.chunk` appends to
    ``text`` and sets ``done`` and the counts when the engine says the generation ended."""

    text: str = ""
    done: bool = False
    finish: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None
    matched: str | None = None

    def completion(self) -> Completion:
        return Completion(
            self.text,
            self.finish,
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.matched,
        )


@dataclass(frozen=True)
class Probe:
    """What detection found: the engine's kind, the model it serves, its version when it
    says, and the answers detection was based on."""

    kind: str
    url: str
    model: str
    version: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


class Adapter:
    """The wire format of one kind of engine. Subclasses set the class attributes and
    implement :meth:`body`, :meth:`completion` and :meth:`chunk`; engines that return
    log-probabilities of given prompt tokens (``capabilities.select.support == "native"``)
    also implement :meth:`score_body` and :meth:`continuation_logprobs`."""

    kind: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    generate_path: ClassVar[str]
    stream_path: ClassVar[str | None] = None  # default: generate_path
    stream_format: ClassVar[Literal["sse", "ndjson"]] = "sse"
    health_path: ClassVar[str] = "/health"  # answers 200 when the engine can serve
    tokenize_path: ClassVar[str | None] = None
    score_path: ClassVar[str | None] = None
    # the response header that counts the prompt's tokens where the body does not (TGI)
    prompt_tokens_header: ClassVar[str | None] = None

    def body(self, gen: Generation, model: str) -> dict[str, Any]:
        raise NotImplementedError

    def completion(self, answer: Any) -> Completion:
        raise NotImplementedError

    def chunk(self, event: Any, state: StreamState) -> None:
        raise NotImplementedError

    def tokenize_body(self, text: str, model: str) -> dict[str, Any]:
        raise NotImplementedError

    def token_count(self, answer: Any) -> int:
        raise NotImplementedError

    def score_body(self, text: str, model: str) -> dict[str, Any]:
        raise NotImplementedError

    def continuation_logprobs(self, answer: Any, prompt_tokens: int) -> list[float | None]:
        """The log-probabilities of the tokens of the scored text after its first
        ``prompt_tokens`` tokens; None for a token the engine gave none for."""
        raise NotImplementedError

    def error_message(self, answer: Any) -> str:
        """The engine's own words from an error answer's body (MLC-LLM encodes its error
        object twice: a JSON string holding the JSON)."""
        if isinstance(answer, str):
            text = answer
            try:
                answer = json.loads(text)
            except ValueError:
                return text[:500]
        if isinstance(answer, dict):
            error = answer.get("error", answer.get("message", answer.get("detail")))
            if isinstance(error, dict):
                error = error.get("message", error)
            if error is not None:
                return str(error)[:500]
        return str(answer)[:500]


_CLEAN_STOPS = {"stop", "eos", "eos_token", "stop_sequence", "tool_calls", None}


class DeltaAdapter(Adapter):
    """An engine whose answer carries the text in ``text_field`` and whose stream sends
    pieces of it, the last event marked by a true ``done_field`` and carrying the counts
    (:meth:`final` reads them)."""

    text_field: ClassVar[str]
    done_field: ClassVar[str]

    def final(self, answer: dict[str, Any], into: Completion | StreamState) -> None:
        raise NotImplementedError

    def completion(self, answer: Any) -> Completion:
        done = Completion(str(answer.get(self.text_field) or ""), "stop")
        self.final(answer, done)
        return done

    def chunk(self, event: Any, state: StreamState) -> None:
        state.text += str(event.get(self.text_field) or "")
        if event.get(self.done_field):
            self.final(event, state)
            state.done = True


def sampling_fields(gen: Generation, **names: str) -> dict[str, Any]:
    """The optional settings of ``gen`` that are set (``stop``, ``seed``,
    ``frequency_penalty``, ``presence_penalty``), under the engine's ``names`` for them
    (``seed="random_seed"``; an empty name leaves the setting out)."""
    values = {
        "stop": list(gen.stop) or None,
        "seed": gen.seed,
        "frequency_penalty": gen.frequency_penalty or None,
        "presence_penalty": gen.presence_penalty or None,
    }
    return {names.get(k, k): v for k, v in values.items() if v is not None and names.get(k, k)}


def openai_finish(reason: Any) -> str:
    """``stop``, ``length``, or ``abort`` for anything else an engine may say (``error``,
    ``abort``, ``cancelled``, ``timeout``, ``preempt``): never a clean stop."""
    if reason == "length":
        return "length"
    return "stop" if reason in _CLEAN_STOPS else "abort"


def openai_usage(answer: Any, state: StreamState | Completion) -> None:
    """Copy an OpenAI-style ``usage`` (with ``prompt_tokens_details.cached_tokens``)."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return
    state.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    state.completion_tokens = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and details.get("cached_tokens") is not None:
        state.cached_tokens = int(details["cached_tokens"])
