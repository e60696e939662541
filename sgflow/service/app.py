"""The FastAPI application: ``create_app(settings)`` wires settings, Redis, the stores, the
error handlers, the middleware, health checks and the ``/v1`` routers.

Routes are plain ``def`` functions: they call Redis through the sync client and the static
checker (CPU-bound, up to the grammar compile limit), and FastAPI runs them in its thread
pool, so neither blocks the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from prometheus_client.registry import CollectorRegistry

from sgflow import __version__
from sgflow.service.errors import install_error_handlers
from sgflow.service.health import engines_check, redis_check, workers_check
from sgflow.service.health import router as health_router
from sgflow.service.metrics import SgflowCollector
from sgflow.service.metrics import router as metrics_router
from sgflow.service.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from sgflow.service.routes import api_router
from sgflow.service.runs import RunSubmitter
from sgflow.service.settings import Settings
from sgflow.store import KeyStore, ProgramBodies, ProgramStore, RunStore
from sgflow.workers.celery_app import make_celery

__all__ = ["create_app"]

_DESCRIPTION = """Checked, queued, validated structured-generation programs.

Authenticate with `Authorization: Bearer <API key>` (`sgflow keys create --tenant NAME`).
Every error has the body `{"error": {"code", "message", "field", "limit", "hint"}}`; `field`
is a JSON pointer into the request body.
"""


def create_app(
    settings: Settings | None = None, redis_client: redis.Redis | None = None
) -> FastAPI:
    """The API application.

    ``settings`` default ``Settings()`` (the environment). ``redis_client`` (default: one
    made from ``settings.redis_url``, with ``decode_responses=True``, closed at shutdown) is
    any sync ``redis.Redis``; a client passed in is left open. Raises ``ValueError`` when
    there is neither a client nor ``settings.redis_url`` (``sgflow up`` starts an embedded
    Redis and passes its URL).
    """
    settings = settings or Settings()
    owned = redis_client is None
    if redis_client is None:
        if settings.redis_url is None:
            raise ValueError(
                "no Redis: set REDIS_URL (or SGFLOW_REDIS_URL), or start with `sgflow up`, "
                "which runs an embedded one"
            )
        redis_client = redis.Redis.from_url(
            settings.redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=30
        )
    client = redis_client

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            client.close()

    app = FastAPI(
        title="sgflow",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.redis = client
    app.state.keys = KeyStore(client, prefix=settings.redis_prefix)
    app.state.programs = ProgramStore(client, prefix=settings.redis_prefix)
    app.state.runs = RunStore(
        client, prefix=settings.redis_prefix, result_ttl_s=settings.result_ttl_s
    )
    app.state.submitter = RunSubmitter(
        store=app.state.runs,
        bodies=ProgramBodies(client, prefix=settings.redis_prefix),
        programs=app.state.programs,
        celery=make_celery(
            settings.redis_url or "redis://127.0.0.1:6379/0",
            visibility_timeout_s=settings.celery_visibility_timeout_s,
            hard_time_limit_s=settings.celery_hard_time_limit_s,
        ),
        max_active_runs=settings.max_concurrent_runs_per_tenant,
    )
    app.state.ready_checks = [
        redis_check(client),
        engines_check(settings.engine_urls, timeout_s=settings.engine_health_timeout_s),
        workers_check(app.state.runs),
    ]
    app.state.metrics_registry = CollectorRegistry(auto_describe=False)
    app.state.metrics_registry.register(
        SgflowCollector(
            app.state.runs, settings.engine_urls, engine_timeout_s=settings.engine_health_timeout_s
        )
    )
    install_error_handlers(app)
    # the last added runs first: request ids and the catch-all wrap the size limit
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        path_limits={"/v1/batches": settings.max_batch_bytes},
    )
    app.add_middleware(RequestContextMiddleware, dev_mode=settings.dev_mode)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(api_router)
    return app
