"""``sgflow bench load``: ``GET /v1/runs/{id}`` while 1,000 event streams and 100 extractions wait.

One API process (``sgflow serve``) on an embedded Valkey, no engine and no Celery worker:

1. **idle**: ``GET /v1/runs/{id}`` over and over, one at a time, for 20 s (full: 60 s) (the
   probe), timed by the client; its p99 is the baseline.
2. **loaded**: a second process opens 1,000 event streams (one per queued run) and waits until
   each has its first event, then sends 100 ``POST /v1/extract`` calls that wait (up to
   ``timeout_s``) for runs nobody runs yet, while a ticker appends events to the followed runs
   (``tick``, 200/s quick, 500/s full: each run gets a few) as workers would. The same probe
   runs again.
3. **drain**: a stand-in worker (in the load process, through the store: claim, finish)
   completes every extraction run, so each waiting extraction must answer 200 (a 202 would
   mean it gave up); the followed runs are cancelled, so each stream must end with
   ``run.finished`` having delivered every ``tick`` appended to its run.

What makes the extractions wait is that no worker runs until the stand-in is told to: the
engine is not involved (it would only measure the model). The load process runs at nice 10:
its clients would be on other machines, here they share the API's cores. Reported: the probe's p99 under
load (target under 100 ms) and ÷ its idle p99 (target under 3), 5xx answers (0), events
lost (0), extractions answered (all, 200 or 202), streams that delivered events (all), and
the machine's load average, since other work on a shared machine moves these numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import httpx
import redis

from sgflow.bench._common import bench_cluster, ratio
from sgflow.bench.report import Report, Target, progress
from sgflow.store import RunStore

__all__ = ["LoadPlan", "p99", "run"]

STREAMS = 1_000
EXTRACTS = 100
P99_TARGET = Target("<=", 0.1)
RATIO_TARGET = Target("<=", 3.0)
ZERO = Target("<=", 0)
_NO_ENGINE = "http://127.0.0.1:9"  # nothing listens: no run ever reaches an engine
_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def p99(values: list[float]) -> float | None:
    """The 99th percentile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]


@dataclass
class LoadPlan:
    """What the load process does (it is started with ``spawn``: everything here pickles)."""

    api_url: str
    key: str
    redis_url: str
    prefix: str
    runs: list[str]
    extracts: int
    tick_rate: float
    extract_timeout_s: float
    connect_timeout_s: float = 120.0


@dataclass
class _Stream:
    ticks: int = 0
    connects: int = 0
    finished: bool = False
    last_id: str | None = None
    statuses: list[int] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None


# -- the probe (this process) -------------------------------------------------------------------


def probe(
    api_url: str, key: str, runs: list[str], *, n: int = 0, seconds: float = 0
) -> dict[str, Any]:
    """Sequential ``GET /v1/runs/{id}`` (10 s timeout each), at least ``n`` of them and for at
    least ``seconds``: latencies and failures."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {key}"}
    until = time.monotonic() + seconds
    with httpx.Client(base_url=api_url, headers=headers, timeout=10) as client:
        i = 0
        while i < n or time.monotonic() < until:
            i += 1
            start = time.perf_counter()
            try:
                r = client.get(f"/v1/runs/{runs[i % len(runs)]}")
                outcome = str(r.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            latencies.append(time.perf_counter() - start)
            if outcome != "200":
                failures[outcome] = failures.get(outcome, 0) + 1
    ordered = sorted(latencies)
    return {
        "n": len(latencies),
        "p50_s": ordered[len(ordered) // 2],
        "p99_s": p99(latencies),
        "max_s": ordered[-1],
        "failures": failures,
    }


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used, from ``/proc`` (None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(api_url: str, name: str) -> float | None:
    """One unlabelled sample of ``/metrics`` (None if absent)."""
    try:
        text = httpx.get(f"{api_url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _wait_subscribers(api_url: str, want: int, timeout_s: float = 60) -> float | None:
    """Wait until the API's event hub has ``want`` subscribers (every stream open, every
    extraction waiting); their number then, or None when the API does not say."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = _metric(api_url, "sgflow_event_subscribers")
        if seen is None or seen >= want or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


# -- the load (a process of its own) ------------------------------------------------------------


def _load_main(plan: LoadPlan, conn: Connection) -> None:
    # the 1,000 clients would be on other machines; here they share the API's cores, so
    # they yield them first (the API, Redis and the probe keep their priority)
    os.nice(10)
    conn.send(asyncio.run(_load(plan, conn)))


async def _load(plan: LoadPlan, conn: Connection) -> dict[str, Any]:
    store = RunStore(redis.Redis.from_url(plan.redis_url), prefix=plan.prefix)
    limits = httpx.Limits(max_connections=len(plan.runs) + plan.extracts + 50)
    timeout = httpx.Timeout(plan.extract_timeout_s + 60, connect=30)
    headers = {"Authorization": f"Bearer {plan.key}"}
    streams = {run_id: _Stream() for run_id in plan.runs}
    async with httpx.AsyncClient(
        base_url=plan.api_url, headers=headers, timeout=timeout, limits=limits
    ) as client:
        followers = [asyncio.create_task(_follow(client, r, s)) for r, s in streams.items()]
        t0 = time.monotonic()
        with_timeout = asyncio.wait_for(
            asyncio.gather(*(s.connected.wait() for s in streams.values())),
            plan.connect_timeout_s,
        )
        with contextlib.suppress(TimeoutError):  # report how many connected, and go on
            await with_timeout
        connected = sum(s.connected.is_set() for s in streams.values())
        connect_s = time.monotonic() - t0
        extract_statuses: list[str] = []
        extracts = [
            asyncio.create_task(_extract(client, plan, i, extract_statuses))
            for i in range(plan.extracts)
        ]
        stop_ticks = threading.Event()
        appended: dict[str, int] = dict.fromkeys(plan.runs, 0)
        ticker = asyncio.create_task(
            asyncio.to_thread(_tick, store, plan.runs, plan.tick_rate, stop_ticks, appended)
        )
        await asyncio.sleep(2)  # the extractions are in, waiting
        conn.send({"connected": connected, "connect_s": round(connect_s, 2)})
        await asyncio.to_thread(conn.recv)  # the probe is over
        stop_ticks.set()
        await ticker
        worker = await asyncio.to_thread(
            _stand_in_worker, store, plan.extracts, skip=set(plan.runs)
        )
        await asyncio.wait_for(asyncio.gather(*extracts), plan.extract_timeout_s + 60)
        await asyncio.to_thread(_cancel_all, store, plan.runs)
        _, pending = await asyncio.wait(followers, timeout=120)
        for task in pending:
            task.cancel()
    store.redis.close()
    lost = sum(max(0, appended[r] - s.ticks) for r, s in streams.items())
    return {
        "connected": connected,
        "connect_s": round(connect_s, 2),
        "ticks_appended": sum(appended.values()),
        "ticks_received": sum(s.ticks for s in streams.values()),
        "events_lost": lost,
        "streams_delivering": sum(s.ticks > 0 for s in streams.values()),
        "streams_finished": sum(s.finished for s in streams.values()),
        "stream_reconnects": sum(max(0, s.connects - 1) for s in streams.values()),
        "stream_5xx": sum(1 for s in streams.values() for st in s.statuses if st >= 500),
        "stream_errors": sorted({s.error for s in streams.values() if s.error})[:5],
        "extract_statuses": {k: extract_statuses.count(k) for k in sorted(set(extract_statuses))},
        "extract_runs_finished_by_stand_in": worker,
    }


async def _follow(client: httpx.AsyncClient, run_id: str, state: _Stream) -> None:
    """Follow ``run_id`` to ``run.finished``, reconnecting with ``Last-Event-ID`` as a real
    client does when a stream breaks or the server ends it early (a slow reader)."""
    while not state.finished and state.connects < 20:
        state.connects += 1
        headers = {"Last-Event-ID": state.last_id} if state.last_id else {}
        fields: dict[str, str] = {}
        try:
            async with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as r:
                state.statuses.append(r.status_code)
                if r.status_code != 200:
                    await r.aread()
                    await asyncio.sleep(1)
                    continue
                async for line in r.aiter_lines():
                    if line:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                        continue
                    kind, event_id = fields.get("event"), fields.get("id")
                    fields = {}
                    if kind is None:
                        continue
                    state.last_id = event_id or state.last_id
                    state.connected.set()
                    if kind == "tick":
                        state.ticks += 1
                    elif kind == "run.finished":
                        state.finished = True
        except httpx.HTTPError as exc:
            state.error = type(exc).__name__
            await asyncio.sleep(1)


async def _extract(client: httpx.AsyncClient, plan: LoadPlan, i: int, statuses: list[str]) -> None:
    body = {"schema": _SCHEMA, "text": f"the number {i}", "timeout_s": plan.extract_timeout_s}
    try:
        r = await client.post("/v1/extract", json=body)
        statuses.append(str(r.status_code))
    except httpx.HTTPError as exc:
        statuses.append(type(exc).__name__)


def _tick(
    store: RunStore, runs: list[str], rate: float, stop: threading.Event, appended: dict[str, int]
) -> None:
    """Append ``tick`` events round-robin at about ``rate`` per second until ``stop``."""
    i = 0
    start = time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate)
        while i < due and not stop.is_set():
            run_id = runs[i % len(runs)]
            store.append_event(run_id, "tick", {"i": i})
            appended[run_id] += 1
            i += 1
        stop.wait(0.02)


def _stand_in_worker(
    store: RunStore, expected: int, *, skip: set[str], timeout_s: float = 60
) -> int:
    """Finish every queued run but those in ``skip`` (the extractions') succeeded, as a
    worker would; returns how many, once ``expected`` were finished or ``timeout_s``
    passed."""
    finished = 0
    deadline = time.monotonic() + timeout_s
    while finished < expected and time.monotonic() < deadline:
        for run_id in store.stale_queued(0):
            if run_id in skip:
                continue
            claim = store.claim(run_id, "bench-stand-in")
            if claim is not None and store.finish(
                claim, status="succeeded", output={"output": {"n": 1}}
            ):
                finished += 1
        time.sleep(0.1)
    return finished


def _cancel_all(store: RunStore, runs: list[str]) -> None:
    for run_id in runs:
        store.request_cancel(run_id)


# -- the scenario -------------------------------------------------------------------------------


def run(*, quick: bool, api_env: dict[str, str] | None = None) -> Report:
    """The scenario; ``api_env`` adds to the API process's environment (e.g. a
    ``PYTHONPATH`` to measure another version of the service with the same load)."""
    seconds = 20.0 if quick else 60.0
    tick_rate = 200.0 if quick else 500.0
    report = Report(
        "load",
        raw={
            "streams": STREAMS,
            "extracts": EXTRACTS,
            "probe_s": seconds,
            "tick_rate": tick_rate,
        },
    )
    load_avg = {"start": os.getloadavg()[0]}
    env = {"SGFLOW_MAX_CONCURRENT_RUNS_PER_TENANT": str(EXTRACTS * 10), **(api_env or {})}
    progress("load", "starting the API (no engine, no worker) on an embedded Valkey")
    with bench_cluster("load", engine_urls=[_NO_ENGINE], workers=0, router=False, env=env) as c:
        assert c.api_url is not None
        key = c.create_key("bench")
        prefix = c.config.prefix
        store = RunStore(redis.Redis.from_url(c.redis_url), prefix=prefix)
        runs = [uuid.uuid4().hex for _ in range(STREAMS)]
        store.create_many(
            {"run_id": r, "tenant": "bench", "program": "bench@1", "program_hash": "h",
             "inputs": {}}
            for r in runs
        )  # fmt: skip
        probe(c.api_url, key, runs, n=20)  # warm-up: connections, scripts
        progress("load", f"idle probe: GET /v1/runs/{{id}} for {seconds:g} s")
        api_pid = dict(c.children)["api"].pid
        cpu0 = cpu_seconds(api_pid)
        idle = probe(c.api_url, key, runs, seconds=seconds)
        cpu1 = cpu_seconds(api_pid)
        load_avg["idle"] = os.getloadavg()[0]
        plan = LoadPlan(
            api_url=c.api_url,
            key=key,
            redis_url=c.redis_url,
            prefix=prefix,
            runs=runs,
            extracts=EXTRACTS,
            tick_rate=tick_rate,
            extract_timeout_s=180.0,
        )
        ctx = multiprocessing.get_context("spawn")
        here, there = ctx.Pipe()
        loader = ctx.Process(target=_load_main, args=(plan, there), daemon=True)
        progress("load", f"opening {STREAMS} event streams, then {EXTRACTS} waiting extractions")
        loader.start()
        ready = here.recv()
        subscribers = _wait_subscribers(c.api_url, STREAMS + EXTRACTS)
        progress("load", f"{ready['connected']} streams in {ready['connect_s']} s; probing")
        cpu2 = cpu_seconds(api_pid)
        loaded = probe(c.api_url, key, runs, seconds=seconds)
        cpu3 = cpu_seconds(api_pid)
        load_avg["loaded"] = os.getloadavg()[0]
        here.send("done")
        progress("load", "draining: a stand-in worker ends the extractions, streams end")
        outcome = here.recv()
        loader.join(timeout=60)
        store.redis.close()
    report.raw.update(idle=idle, loaded=loaded, load=outcome, load_average=load_avg)
    report.raw["hub_subscribers_while_loaded"] = subscribers
    if None not in (cpu0, cpu1, cpu2, cpu3):
        report.raw["api_cpu_share"] = {  # of one core, during each probe
            "idle": round((cpu1 - cpu0) / seconds, 3),  # type: ignore[operator]
            "loaded": round((cpu3 - cpu2) / seconds, 3),  # type: ignore[operator]
        }
    report.tables["GET /v1/runs/{id} (seconds)"] = [
        {"phase": name, **{k: v for k, v in p.items() if k != "failures"}}
        for name, p in (("idle", idle), ("loaded", loaded))
    ]
    answered = sum(outcome["extract_statuses"].get(s, 0) for s in ("200", "202"))
    server_errors = (
        outcome["stream_5xx"]
        + sum(n for s, n in outcome["extract_statuses"].items() if s.startswith("5"))
        + sum(n for s, n in loaded["failures"].items() if s.startswith("5"))
    )
    report.add("loaded_p99_s", loaded["p99_s"], P99_TARGET)
    report.add("loaded_p99_over_idle_p99", ratio(loaded["p99_s"], idle["p99_s"]), RATIO_TARGET)
    report.add("server_errors", server_errors, ZERO)
    report.add("events_lost", outcome["events_lost"], ZERO)
    report.add("probe_failures", sum(loaded["failures"].values()), ZERO)
    report.add("extracts_unanswered", EXTRACTS - answered, ZERO)
    report.add("streams_not_delivering", STREAMS - outcome["streams_delivering"], ZERO)
    report.add("streams_connected", outcome["connected"])
    report.add("idle_p99_s", idle["p99_s"])
    report.notes.append(
        "extractions wait because no worker runs; a stand-in (the store's claim and finish) "
        "completes them after the probe; statuses " + str(outcome["extract_statuses"])
    )
    if "api_cpu_share" in report.raw:
        share = report.raw["api_cpu_share"]
        report.notes.append(
            f"the API process used {share['idle']:.0%} of a core during the idle probe, "
            f"{share['loaded']:.0%} during the loaded one"
        )
    report.notes.append(
        f"load average (1 min) at start {load_avg['start']:.2f}, idle probe "
        f"{load_avg['idle']:.2f}, loaded probe {load_avg['loaded']:.2f} "
        f"on {os.cpu_count()} CPUs"
    )
    return report
