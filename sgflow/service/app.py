"""The FastAPI application: ``create_app(settings)`` wires settings, Redis, the stores, the
event hub, the error handlers, the middleware, health checks and the ``/v1`` routers.

Routes are ``async def``: Redis through the async stores of :mod:`sgflow.store`, waiting
(event streams, ``/v1/extract``) on the event hub, and the CPU-bound work (the static
checker, validation) in a bounded thread pool (:mod:`sgflow.service.offload`), so a request
that waits never holds a thread and a heavy one cannot stall the loop.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
from fastapi import FastAPI
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from sgflow import __version__, traces
from sgflow.service.compile_check import VocabularyCheck
from sgflow.service.errors import install_error_handlers
from sgflow.service.events import BLOCK_MS, EventHub
from sgflow.service.health import durability_check, engines_check, redis_check, workers_check
from sgflow.service.health import router as health_router
from sgflow.service.metrics import router as metrics_router
from sgflow.service.middleware import (
    BodySizeLimitMiddleware,
    JsonBodyMiddleware,
    RequestContextMiddleware,
    TracingMiddleware,
)
from sgflow.service.playground import router as playground_router
from sgflow.service.routes import api_router
from sgflow.service.routes.files import FORM_OVERHEAD
from sgflow.service.runs import RunSubmitter
from sgflow.settings import Settings, apply
from sgflow.store import (
    AsyncFileStore,
    AsyncKeyStore,
    AsyncProgramBodies,
    AsyncProgramStore,
    AsyncRunStore,
)
from sgflow.workers.celery_app import celery_from

__all__ = ["REDIS_CONNECTIONS", "REDIS_POOL_WAIT_S", "create_app"]

# An API process's Redis connections (besides the event hub's one): enough for hundreds of
# requests in flight, each holding one for a command's round trip. Past it a request waits
# (up to REDIS_POOL_WAIT_S) instead of failing, as redis-py's default pool would.
REDIS_CONNECTIONS = 64
REDIS_POOL_WAIT_S = 20.0

log = logging.getLogger("sgflow.service")

_DESCRIPTION = """Checked, queued, validated structured-generation programs.

Authenticate with `Authorization: Bearer <API key>` (`sgflow keys create --tenant NAME`).
Every error has the body `{"error": {"code", "message", "field", "limit", "hint"}}`; `field`
is a JSON pointer into the request body.
"""


def create_app(
    settings: Settings | None = None, redis_client: redis.asyncio.Redis | None = None
) -> FastAPI:
    """The API application.

    ``settings`` default ``Settings()`` (the environment), which is then also applied to the
    process (:func:`sgflow.settings.apply`: the grammar limits), as ``sgflow serve``'s
    factory call is its start-up. ``redis_client`` (default: one made from
    ``settings.redis_url``, with ``decode_responses=True`` and a pool of
    :data:`REDIS_CONNECTIONS` connections that a request waits for when all are busy,
    closed at shutdown) is a ``redis.asyncio.Redis``, used in the event loop that serves the
    app; a client passed in is left open. The event hub gets a client of its own, with the
    same connection settings. Raises ``ValueError`` when there is neither a client nor
    ``settings.redis_url`` (``sgflow up`` starts an embedded Redis and passes its URL).
    """
    if settings is None:
        settings = apply(Settings())
        traces.configure(settings, "sgflow-api")
        for problem in settings.warnings():
            log.warning(problem)
    owned = redis_client is None
    if redis_client is None:
        if settings.redis_url is None:
            raise ValueError(
                "no Redis: set REDIS_URL, or start with `sgflow up`, which runs an embedded one"
            )
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=30,
            max_connections=REDIS_CONNECTIONS,
            timeout=REDIS_POOL_WAIT_S,
            # what Redis.from_url gives by default, lost when the pool is made here: a
            # connection broken by a Redis restart is replaced and the command sent again
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=1), retries=10),
        )
        redis_client = redis.asyncio.Redis(connection_pool=pool)
    client = redis_client
    runs = AsyncRunStore(client, prefix=settings.redis_prefix, result_ttl_s=settings.result_ttl_s)
    hub = EventHub(runs, _blocking_client(client))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _tune_gc()
        if app.state.vocabulary_check.enabled:
            threading.Thread(
                target=app.state.vocabulary_check.warm, name="compile-check", daemon=True
            ).start()
        yield
        await hub.close()
        app.state.vocabulary_check.close()
        traces.shutdown()
        if owned:
            await client.aclose()

    app = FastAPI(
        title="sgflow",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.redis = client
    app.state.keys = AsyncKeyStore(client, prefix=settings.redis_prefix)
    app.state.programs = AsyncProgramStore(client, prefix=settings.redis_prefix)
    app.state.files = AsyncFileStore(client, prefix=settings.redis_prefix)
    app.state.runs = runs
    app.state.hub = hub
    app.state.vocabulary_check = VocabularyCheck(settings)
    app.state.submitter = RunSubmitter(
        store=runs,
        bodies=AsyncProgramBodies(client, prefix=settings.redis_prefix),
        programs=app.state.programs,
        celery=celery_from(settings),
        max_active_runs=settings.max_concurrent_runs_per_tenant,
    )
    app.state.ready_checks = [
        redis_check(runs),
        engines_check(settings.engine_urls, timeout_s=settings.engine_health_timeout_s),
        workers_check(runs),
    ]
    if settings.router_url:
        app.state.ready_checks.append(
            engines_check(
                [settings.router_url], timeout_s=settings.engine_health_timeout_s, name="router"
            )
        )
    app.state.ready_checks.append(durability_check(client))
    install_error_handlers(app)
    # the last added runs first: request ids and the catch-all wrap the size limit, which
    # wraps the JSON bounds (a body is counted before it is parsed)
    app.add_middleware(JsonBodyMiddleware, max_depth=settings.max_json_depth)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        path_limits={
            "/v1/batches": settings.max_batch_bytes,
            "/v1/files": settings.max_file_bytes + FORM_OVERHEAD,
        },
        timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(RequestContextMiddleware, dev_mode=settings.dev_mode)
    app.add_middleware(TracingMiddleware)  # outermost: the access log line is in the span
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(api_router)
    app.include_router(playground_router)
    return app


_GC_FULL_EVERY = 100  # gen-1 collections between full ones (CPython's default: 10)
_gc_tuned = False


def _tune_gc() -> None:
    """Keep the garbage collector's full passes off the request path, once per process.

    A full collection walks every tracked object and stops the event loop while it does. At
    start-up there are ~425,000 (imports: the checker pulls in sglang and xgrammar), and
    1,000 open event streams add ~330,000: full passes took 200-700 ms, every few seconds
    under load (``sgflow bench load``). What exists at start-up is frozen (never walked
    again), and a full pass waits for 100 generation-1 passes instead of 10: short-lived
    garbage is still collected young, only the rare full walk is rarer."""
    global _gc_tuned
    if not _gc_tuned:
        _gc_tuned = True
        gc.collect()
        gc.freeze()
        gen0, gen1, _ = gc.get_threshold()
        gc.set_threshold(gen0, gen1, _GC_FULL_EVERY)


def _blocking_client(client: redis.asyncio.Redis) -> redis.asyncio.Redis:
    """A client like ``client`` (same server, options, connection class) with one
    connection whose socket timeout outlasts the hub's blocking reads."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs["socket_timeout"] = BLOCK_MS / 1000 + 10
    return redis.asyncio.Redis(
        connection_pool=redis.asyncio.ConnectionPool(
            connection_class=pool.connection_class, max_connections=1, **kwargs
        )
    )
