"""The embedded engine: a model, its grammar compiler, a prefix cache and the scheduler.

``Engine.prepare`` turns a validated ``/generate`` request into sequences (tokenized,
length-checked, constraints compiled) or raises a 400-class error before anything is
queued; ``submit``/``cancel`` hand them to the scheduler thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sgflow.engine.constraints import GrammarBackend
from sgflow.engine.errors import BadRequest, ContextOverflow
from sgflow.engine.model import LlamaModel, default_model_path
from sgflow.engine.protocol import ConstraintSpec, GenerateRequest, expand
from sgflow.engine.sampling import Sampler
from sgflow.engine.scheduler import Scheduler
from sgflow.engine.sequence import Sequence, Sink
from sgflow.grammars.layout import JsonLayout, LayoutName

__all__ = ["Engine", "EngineConfig"]

log = logging.getLogger("sgflow.engine")

_MB = 1024 * 1024


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings; defaults are what ``sgflow engine`` uses.

    ``ctx`` is the most tokens one sequence may hold (prompt + generation); ``cache_mb``
    the KV memory shared by all sequences, which bounds the prefix cache; ``slots`` the
    number of KV sequences (running requests + cached prefixes). ``max_queued`` (default
    1024, one request of ``n`` times its list of prompts at their largest) bounds the sequences waiting
    for a running place: a request that would pass it is answered 503 ``engine.overloaded``
    with ``Retry-After`` (one larger than the bound is taken when nothing waits).
    ``json_layout`` fixes the whitespace of JSON-Schema output (``indent``, ``compact``;
    ``free`` lets the model choose, ``max_json_whitespace`` characters per gap at most).
    ``jump_forward`` decodes the text a grammar forces without sampling it (``--no-jump-forward``
    samples every token, for comparison). ``llama_log`` lets llama.cpp print its own logs (``SGFLOW_LLAMA_LOG``; default quiet).
    """

    model_path: str | None = None
    ctx: int = 8192
    cache_mb: int = 512
    slots: int = 32
    max_running: int = 8
    max_queued: int = 1024
    jump_forward: bool = True
    n_batch: int = 512
    threads: int | None = None
    json_layout: LayoutName = "indent"
    max_json_whitespace: int = 4
    # compile + serialise in the slow lane's child: the invoice schema compiles in 4.7-6.5 s
    # on this 2-core machine and ships 57 MB of JSON, so 10 s was missed under no load at all
    grammar_timeout_s: float = 30.0
    served_model_name: str | None = None
    llama_log: bool = False


class Engine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        path = config.model_path or default_model_path()
        self.model = LlamaModel(
            path,
            cache_bytes=config.cache_mb * _MB,
            min_cells=config.ctx,
            n_seq=config.slots,
            n_batch=config.n_batch,
            n_threads=config.threads,
            llama_log=config.llama_log,
        )
        self.ctx = min(config.ctx, self.model.n_ctx, self.model.info.n_ctx_train)
        self.stop_ids = sorted(set(self.model.info.eog_ids))
        self.grammars = GrammarBackend(
            self.model.vocab_bytes(),
            stop_ids=self.stop_ids,
            layout=JsonLayout(config.json_layout, config.max_json_whitespace),
            compile_timeout_s=config.grammar_timeout_s,
        )
        self.scheduler = Scheduler(
            self.model,
            max_running=config.max_running,
            max_queued=config.max_queued,
            jump_forward=config.jump_forward,
        )
        self.scheduler.start()
        log.info(
            "engine ready",
            extra={
                "model": path,
                "kv_cells": self.model.n_ctx,
                "kv_bytes_per_token": self.model.bytes_per_token,
                "slots": config.slots,
                "ctx": self.ctx,
            },
        )

    @property
    def model_path(self) -> str:
        return self.model.info.path

    @property
    def served_model_name(self) -> str:
        return self.config.served_model_name or self.model.info.name

    def prepare(self, req: GenerateRequest, sink: Sink) -> tuple[list[Sequence], bool]:
        """Validate and build the sequences of ``req``; raise before queueing anything."""
        specs, is_list = expand(req)
        compiled: dict[ConstraintSpec, Any] = {}
        prompts: dict[int, list[int]] = {}
        seqs: list[Sequence] = []
        for spec in specs:
            field = "text" if spec.text is not None else "input_ids"
            if spec.prompt_index not in prompts:
                prompts[spec.prompt_index] = self._prompt_ids(spec.text, spec.input_ids, field)
            prompt = prompts[spec.prompt_index]
            params = spec.params
            max_new = 128 if params.max_new_tokens is None else params.max_new_tokens
            if len(prompt) + max_new > self.ctx:
                raise ContextOverflow(
                    f"the prompt has {len(prompt)} tokens and max_new_tokens is {max_new}; "
                    f"together they must fit the context of {self.ctx} tokens",
                    field="sampling_params.max_new_tokens" if len(prompt) < self.ctx else field,
                )
            constraint = params.constraint()
            grammar = None
            if constraint is not None:
                if constraint not in compiled:
                    compiled[constraint] = self.grammars.compile(constraint)
                grammar = self.grammars.state(compiled[constraint])
            end_ids = frozenset(self.stop_ids) | frozenset(params.stop_token_ids or [])
            seqs.append(
                Sequence(
                    spec=spec,
                    prompt=prompt,
                    sampler=Sampler(
                        temperature=params.temperature,
                        top_p=params.top_p,
                        top_k=params.top_k,
                        min_p=params.min_p,
                        frequency_penalty=params.frequency_penalty,
                        presence_penalty=params.presence_penalty,
                        repetition_penalty=params.repetition_penalty,
                        min_new_tokens=params.min_new_tokens,
                        ignore_eos=params.ignore_eos,
                        end_ids=end_ids,
                        logit_bias=self._logit_bias(params.logit_bias),
                        seed=params.sampling_seed,
                        prompt=prompt,
                    ),
                    grammar=grammar,
                    end_ids=end_ids,
                    sink=sink,
                    stream=req.stream,
                )
            )
        return seqs, is_list

    def _prompt_ids(self, text: str | None, ids: list[int] | None, field: str) -> list[int]:
        if text is not None:
            prompt = self.model.tokenize(text)
        else:
            assert ids is not None
            bad = [t for t in ids if not 0 <= t < self.model.info.n_vocab]
            if bad:
                raise BadRequest(
                    f"input_ids contains {bad[0]}, outside the vocabulary 0..{self.model.info.n_vocab - 1}",
                    field="input_ids",
                )
            prompt = list(ids)
        if not prompt:
            raise BadRequest(f"{field} is empty after tokenization", field=field)
        if len(prompt) >= self.ctx:
            raise ContextOverflow(
                f"{field} has {len(prompt)} tokens; the context holds {self.ctx}", field=field
            )
        return prompt

    def _logit_bias(self, bias: dict[str, float] | None) -> dict[int, float] | None:
        if not bias:
            return None
        out: dict[int, float] = {}
        for key, value in bias.items():
            if not key.lstrip("-").isdigit() or not 0 <= int(key) < self.model.info.n_vocab:
                raise BadRequest(
                    f"logit_bias key {key!r} is not a token id", field="sampling_params.logit_bias"
                )
            out[int(key)] = value
        return out

    def submit(self, seqs: list[Sequence]) -> None:
        self.scheduler.submit(seqs)

    def cancel(self, seqs: list[Sequence]) -> None:
        self.scheduler.cancel(seqs)

    def flush_cache(self) -> bool:
        return self.scheduler.flush()

    def close(self) -> None:
        stopped = self.scheduler.stop()
        self.grammars.close()
        if stopped:
            self.model.close()
        else:  # freeing the context under a running llama_decode would crash the process
            log.error("the decode thread is still running; the model is left to the process exit")
