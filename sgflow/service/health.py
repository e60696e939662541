"""``/healthz`` (the process is up) and ``/readyz`` (it can serve: every ready check passes).

Readiness is the list of :class:`ReadyCheck` on ``app.state.ready_checks``: a name and an
async probe returning ``(ok, detail)``. ``create_app`` installs :func:`redis_check`,
:func:`engines_check` (and one named ``router`` when ``SGFLOW_ROUTER_URL`` is set),
:func:`workers_check` and :func:`durability_check`; other parts of the service may append
theirs, e.g. ``app.state.ready_checks.append(ReadyCheck("workers", probe))``.
Checks run concurrently; a probe that raises or overruns ``CHECK_TIMEOUT_S`` (3 s) fails
with the reason as its detail. A check with ``required=False`` never makes the service
unready: when it fails, ``/readyz`` lists it under ``warnings`` instead of ``failing``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

import anyio
import httpx
import redis
import redis.asyncio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sgflow.adapters.detect import health_url
from sgflow.errors import SgflowError
from sgflow.store import AsyncRunStore

__all__ = [
    "CHECK_TIMEOUT_S",
    "CheckResult",
    "Probe",
    "ReadyCheck",
    "durability_check",
    "engines_check",
    "redis_check",
    "router",
    "workers_check",
]

CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class CheckResult:
    """``name`` of the dependency, ``ok``, ``detail`` saying what was seen, and whether
    readiness depends on it (``required``)."""

    name: str
    ok: bool
    detail: str = ""
    required: bool = True


Probe = Callable[[], Awaitable[tuple[bool, str]]]


@dataclass(frozen=True)
class ReadyCheck:
    """A named readiness probe; the probe returns ``(ok, detail)`` or raises (not ok).
    ``required`` (default True): whether a failure makes the service unready, or is only a
    warning."""

    name: str
    probe: Probe
    required: bool = True


router = APIRouter(tags=["health"])


def redis_check(store: AsyncRunStore, *, timeout_s: float = 1.0) -> ReadyCheck:
    """PING the service's Redis (``timeout_s`` default 1)."""

    async def probe() -> tuple[bool, str]:
        with anyio.fail_after(timeout_s):
            await store.ping()
        return True, "PONG"

    return ReadyCheck("redis", probe)


def engines_check(
    urls: Sequence[str], *, timeout_s: float = 1.0, name: str = "engines"
) -> ReadyCheck:
    """``GET <url>/health`` on every engine (``timeout_s`` default 1 each, concurrently).
    Passes when at least one answers 200: one replica down degrades, it does not take the
    API out of rotation. The detail names each engine's state. ``name`` default
    ``engines`` (``router`` for sglang-router, which answers ``/health`` too)."""

    async def one(client: httpx.AsyncClient, url: str) -> tuple[str, bool, str]:
        try:
            response = await client.get(health_url(url))
        except httpx.HTTPError as exc:
            return url, False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return url, response.status_code == 200, f"HTTP {response.status_code}"

    async def probe() -> tuple[bool, str]:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            states = await asyncio.gather(*(one(client, url) for url in urls))
        healthy = sum(ok for _, ok, _ in states)
        detail = f"{healthy} of {len(states)} healthy; " + "; ".join(
            f"{url}: {'ok' if ok else what}" for url, ok, what in states
        )
        return healthy > 0, detail

    return ReadyCheck(name, probe)


def durability_check(client: redis.asyncio.Redis) -> ReadyCheck:
    """A warning, never a failure: whether Redis can keep the promise that an accepted run
    is never lost (AOF on, ``maxmemory-policy noeviction``;
    :func:`sgflow.settings.durability_problems`). Development and test Redis often cannot."""
    from sgflow.settings import durability_problems

    async def probe() -> tuple[bool, str]:
        found: dict[str, str] = {}
        try:
            for name in ("appendonly", "maxmemory-policy"):
                raw = await client.config_get(name)
                found.update({str(k): str(v) for k, v in (raw or {}).items()})
        except redis.ResponseError as exc:
            return False, f"cannot read Redis's persistence settings (CONFIG GET refused: {exc})"
        problems = durability_problems(found)
        return not problems, "; ".join(problems) or "AOF on, noeviction"

    return ReadyCheck("redis_durability", probe, required=False)


async def _run(check: ReadyCheck) -> CheckResult:
    try:
        with anyio.fail_after(CHECK_TIMEOUT_S):
            ok, detail = await check.probe()
    except TimeoutError:
        return CheckResult(check.name, False, "timed out", check.required)
    except Exception as exc:  # a failing dependency is a result here, not an error
        return CheckResult(check.name, False, f"{type(exc).__name__}: {exc}", check.required)
    return CheckResult(check.name, ok, detail, check.required)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "a check failed; `failing` names it"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Every ready check: 200 ``{"status": "ready"}`` or 503 ``{"status": "unavailable",
    "failing": [names]}``, with each check's result; ``warnings`` names the checks that
    failed but are not required (e.g. ``redis_durability``)."""
    checks: list[ReadyCheck] = request.app.state.ready_checks
    results = await asyncio.gather(*(_run(c) for c in checks))
    failing = [r.name for r in results if not r.ok and r.required]
    body: dict[str, object] = {
        "status": "unavailable" if failing else "ready",
        "failing": failing,
        "warnings": [r.name for r in results if not r.ok and not r.required],
        "checks": [asdict(r) for r in results],
    }
    if failing:
        body["error"] = SgflowError(
            "service.not_ready",
            "not ready: " + ", ".join(failing),
            hint="see `checks` for what each dependency answered",
        ).to_dict()
    return JSONResponse(body, status_code=503 if failing else 200)


def workers_check(store: AsyncRunStore) -> ReadyCheck:
    """At least one worker announced itself recently (each worker's reaper loop marks
    itself alive in the store with a TTL of 3 reaper intervals)."""

    async def probe() -> tuple[bool, str]:
        found = await store.alive_workers()
        if not found:
            return False, "no worker announced itself (start one: `sgflow worker`)"
        return True, f"{len(found)}{'+' if len(found) >= 20 else ''} alive"

    return ReadyCheck("workers", probe)
