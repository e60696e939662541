"""SGLang's native HTTP API, served by the embedded engine.

Routes: ``POST /generate``; ``GET /model_info`` and ``/server_info`` with the deprecated
``/get_model_info`` and ``/get_server_info`` that ``sglang.RuntimeEndpoint`` calls;
``POST /flush_cache``; ``GET /health``, ``/health_generate``; ``GET /get_load`` (the shape
``sglang-router`` sums for its load-aware policies); ``GET /v1/models``.

Each sequence ``/generate`` runs is traced (:mod:`sgflow.traces`), continuing the caller's
``traceparent``: a SERVER span ``engine /generate`` with its tokens, finish reason and
constraint, and under it where its time went: ``engine.prepare`` (tokenizing, compiling the
grammar), ``engine.queue`` (waiting for a slot), ``engine.prefill`` (to the first token) and
``engine.decode``. Exported only when ``SGFLOW_OTLP_ENDPOINT`` is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from sgflow import __version__, traces
from sgflow.engine.engine import Engine
from sgflow.engine.errors import BadRequest, EngineError
from sgflow.engine.model_api import hf_architectures
from sgflow.engine.protocol import parse_generate
from sgflow.engine.sequence import Sequence, Update
from sgflow.jsonbounds import JsonBoundsError, loads
from sgflow.settings import openmp_wait_policy

__all__ = ["create_app"]

log = logging.getLogger("sgflow.engine.server")


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="sgflow engine", version=__version__, docs_url="/docs")

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError) -> JSONResponse:
        return JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers or None)

    @app.post("/generate")
    async def generate(request: Request) -> Response:
        raw = await request.body()
        try:  # bounded: depth, NaN, huge integers, lone surrogates, duplicate keys
            body = loads(raw, max_size=None)
        except JsonBoundsError as exc:
            raise BadRequest(
                f"the body is refused: {exc.message}", field=exc.pointer, code=exc.code
            ) from None
        req = parse_generate(body)
        engine.scheduler.check_room()  # refuse before compiling anything when the queue is full
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[Update] = asyncio.Queue()
        timing = _Timing(traces.context_of(request.headers.get("traceparent")))

        def sink(update: Update) -> None:
            loop.call_soon_threadsafe(updates.put_nowait, update)
            if update.finished:
                loop.call_soon_threadsafe(timing.record, update)

        seqs, is_list = await run_in_threadpool(engine.prepare, req, sink)
        timing.seqs = seqs
        engine.submit(seqs)
        if req.stream:
            return StreamingResponse(
                _stream(engine, seqs, updates, is_list),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _collect(engine, request, seqs, updates, is_list)

    def model_info() -> dict[str, Any]:
        return {
            "model_path": engine.model_path,
            "tokenizer_path": engine.model_path,
            "served_model_name": engine.served_model_name,
            "is_generation": True,
            "model_type": engine.model.info.architecture,
            "architectures": hf_architectures(engine.model.info.architecture),
            "weight_version": "default",
            "preferred_sampling_params": None,
        }

    def server_info() -> dict[str, Any]:
        stats = engine.scheduler.stats()
        cfg = engine.config
        return {
            "version": __version__,
            "engine": "sgflow-llama.cpp",
            "model_path": engine.model_path,
            "served_model_name": engine.served_model_name,
            "tokenizer_path": engine.model_path,
            "context_length": engine.ctx,
            "max_total_num_tokens": engine.model.n_ctx,
            "kv_bytes_per_token": engine.model.bytes_per_token,
            "cache_mb": cfg.cache_mb,
            "slots": cfg.slots,
            "max_running_requests": cfg.max_running,
            "max_queued_requests": stats.max_waiting,
            "chunked_prefill_size": cfg.n_batch,
            "threads": engine.model.n_threads,
            "omp_wait_policy": openmp_wait_policy(),
            "json_layout": cfg.json_layout,
            "max_json_whitespace": cfg.max_json_whitespace,
            "tp_size": 1,
            "dp_size": 1,
            "load_balance_method": "round_robin",
            "disaggregation_mode": "null",
            "grammar_backend": "xgrammar",
            "jump_forward": cfg.jump_forward,
            "internal_states": [
                {
                    "last_gen_throughput": stats.last_gen_throughput,
                    "num_running_reqs": stats.running,
                    "num_waiting_reqs": stats.waiting,
                    "cache_used_tokens": stats.cache_used_tokens,
                    "cache_hit_tokens": stats.cache_hit_tokens,
                    "cache_evictions": stats.evictions,
                    "generated_tokens": stats.generated_tokens,
                    "jump_forward_tokens": stats.forced_tokens,
                    "grammar_masked_tokens": stats.masked_tokens,
                    "grammar_mask_seconds": stats.mask_seconds,
                    "decode_seconds": stats.decode_seconds,
                    "prompt_tokens": stats.prompt_tokens,
                }
            ],
        }

    app.get("/model_info")(model_info)
    app.get("/get_model_info", include_in_schema=False)(model_info)
    app.get("/server_info")(server_info)
    app.get("/get_server_info", include_in_schema=False)(server_info)

    @app.get("/get_load")
    def get_load() -> list[dict[str, int]]:
        stats = engine.scheduler.stats()
        return [
            {
                "dp_rank": 0,
                "num_reqs": stats.running,
                "num_waiting_reqs": stats.waiting,
                "num_tokens": stats.running_tokens,
                "max_waiting_reqs": stats.max_waiting,
            }
        ]

    @app.post("/flush_cache")
    async def flush_cache() -> Response:
        if await run_in_threadpool(engine.flush_cache):
            return PlainTextResponse("Cache flushed.\n")
        return PlainTextResponse(
            "Cache not flushed: requests are running; retry when the engine is idle.\n",
            status_code=400,
        )

    @app.get("/health")
    def health() -> Response:
        return Response(status_code=200)

    @app.get("/health_generate")
    async def health_generate() -> Response:
        req = parse_generate({"text": "ok", "sampling_params": {"max_new_tokens": 1}})
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[Update] = asyncio.Queue()

        def sink(update: Update) -> None:
            loop.call_soon_threadsafe(updates.put_nowait, update)

        seqs, _ = engine.prepare(req, sink)
        engine.submit(seqs)
        try:
            update = await asyncio.wait_for(_final(updates), timeout=60)
        except TimeoutError:
            engine.cancel(seqs)
            return PlainTextResponse("generation timed out\n", status_code=503)
        if update.meta_info["finish_reason"]["type"] == "abort":
            return PlainTextResponse("generation failed\n", status_code=503)
        return Response(status_code=200)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": engine.served_model_name, "object": "model", "owned_by": "sgflow"}],
        }

    return app


class _Timing:
    """The spans of a request's sequences, recorded as each one finishes (times measured
    on the decode thread, as ``perf_counter``, turned into wall-clock nanoseconds)."""

    def __init__(self, parent: Any) -> None:
        self.parent = parent
        self.wall_ns = time.time_ns()
        self.began = time.perf_counter()
        self.seqs: list[Sequence] = []

    def _ns(self, at: float) -> int:
        return self.wall_ns + int((at - self.began) * 1e9)

    def record(self, update: Update) -> None:
        if update.index >= len(self.seqs):
            return
        try:
            self._record(self.seqs[update.index], update.meta_info)
        except Exception:  # tracing never fails a request
            log.exception("could not record a sequence's spans")

    def _record(self, seq: Sequence, meta: dict[str, Any]) -> None:
        end = time.perf_counter()
        finish = meta.get("finish_reason") or {}
        constraint = seq.spec.params.constraint()
        request = traces.record(
            "engine /generate",
            parent=self.parent,
            start_ns=self.wall_ns,
            end_ns=self._ns(end),
            kind=traces.SpanKind.SERVER,
            attributes={
                "gen_ai.usage.input_tokens": meta.get("prompt_tokens"),
                "gen_ai.usage.output_tokens": meta.get("completion_tokens"),
                "sgflow.cached_tokens": meta.get("cached_tokens"),
                "gen_ai.response.finish_reasons": [str(finish.get("type"))],
                "sgflow.constraint.kind": constraint.kind if constraint else "free",
                "sgflow.engine.index": seq.spec.index,
            },
        )
        admitted = seq.admitted_at or end
        first = seq.first_token_at or end
        for name, start, stop in (
            ("engine.prepare", self.began, seq.created),
            ("engine.queue", seq.created, admitted),
            ("engine.prefill", admitted, first),
            ("engine.decode", first, end),
        ):
            traces.record(name, parent=request, start_ns=self._ns(start), end_ns=self._ns(stop))


async def _final(updates: asyncio.Queue[Update]) -> Update:
    while True:
        update = await updates.get()
        if update.finished:
            return update


def _result(update: Update) -> dict[str, Any]:
    return {"text": update.text, "meta_info": update.meta_info}


async def _collect(
    engine: Engine,
    request: Request,
    seqs: list[Sequence],
    updates: asyncio.Queue[Update],
    is_list: bool,
) -> Response:
    results: dict[int, dict[str, Any]] = {}

    async def gather() -> None:
        while len(results) < len(seqs):
            update = await updates.get()
            if update.finished:
                results[update.index] = _result(update)

    async def watch_disconnect() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    gathering = asyncio.create_task(gather())
    watching = asyncio.create_task(watch_disconnect())
    try:
        done, _ = await asyncio.wait({gathering, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
    if gathering not in done:
        gathering.cancel()
        engine.cancel(seqs)
        return Response(status_code=499)
    ordered = [results[i] for i in range(len(seqs))]
    return JSONResponse(ordered if is_list else ordered[0])


async def _stream(
    engine: Engine, seqs: list[Sequence], updates: asyncio.Queue[Update], is_list: bool
) -> AsyncIterator[str]:
    remaining = len(seqs)
    try:
        while remaining:
            update = await updates.get()
            chunk = _result(update)
            if is_list:
                chunk["index"] = update.index
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            if update.finished:
                remaining -= 1
        yield "data: [DONE]\n\n"
    finally:
        if remaining:
            engine.cancel(seqs)  # the client went away mid-stream: stop generating
