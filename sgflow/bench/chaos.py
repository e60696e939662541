"""``sgflow bench chaos``: kill workers, Redis and the engine under load; nothing may be lost.

One cluster of its own: a private ``redis-server`` with AOF fsynced on every write
(:class:`~sgflow.bench.chaos_blows.PrivateRedis`), the embedded engine, two ``sgflow worker``
processes (2 runs each) and ``sgflow serve``. Every run is a 3-step program of free
generation (64, 96 and 24 tokens), so a blow lands while a step is being generated.

1. **workers**: runs are submitted through ``POST /v1/runs``; 20 times (``--quick``: 5),
   once a run is seen generating a step (its last event is ``step.started`` or
   ``step.delta``), the worker holding it is killed with SIGKILL and a new one started. A
   worker is only killed when none of its runs is on its last attempt (``max_attempts``,
   default 3): a run given up after that many crashes is the cap working, not a loss.
2. **Redis**: a batch (``POST /v1/batches``) is submitted; once some of its lines are final
   and others running, Redis is stopped (SIGTERM) and, 2 s later, started again on the same
   port and folder: it comes back from its AOF alone.
3. **engine**: once a run is generating a step, the engine is killed (SIGKILL) and started
   again on the same port (it loads its model again).

Then every run and the batch are waited for (bounded), and the store is audited
(:mod:`sgflow.bench.chaos_audit`): **runs lost** (not final, or failed because the system
gave up: out of attempts, the engine unreachable), **steps recomputed after a checkpoint**
(a step started again after its ``step.finished`` was recorded) and **results written
twice** (two ``run.finished``, or batch counts that are not one per line) must all be 0; the
scenario exits non-zero otherwise. Leases are 10 s (``SGFLOW_LEASE_S``) so that a killed
worker's runs are requeued within seconds, and runs queued for 120 s are re-sent
(``SGFLOW_STALE_QUEUED_S``); the engine runs 1 thread (the machine is shared); everything
else is the defaults.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import redis

from sgflow.bench.chaos_audit import BatchEvidence, RunEvidence, audit
from sgflow.bench.chaos_blows import PrivateRedis, in_flight, pick_worker
from sgflow.bench.report import Report, Target, progress
from sgflow.client import Client
from sgflow.cluster import Cluster, ClusterConfig
from sgflow.store import BatchStore, RunStore
from sgflow.store.records import as_str

__all__ = ["PROGRAM", "run"]

ZERO = Target("<=", 0)
LEASE_S = 10
WORKERS = ("worker0", "worker1")
TOPICS = ["lighthouses", "bees", "volcanoes", "glaciers", "trains", "owls", "tides", "salt"]
PROGRAM: dict[str, Any] = {
    "program": "chaos",
    "version": 1,
    "inputs": {
        "type": "object",
        "properties": {"topic": {"type": "string", "minLength": 1, "maxLength": 100}},
        "required": ["topic"],
    },
    "system": "You are a helpful writer.",
    "steps": [
        {
            "id": "facts",
            "user": "List ten facts about {{ inputs.topic }}, one per line.",
            "gen": {"max_tokens": 64},
        },
        {
            "id": "story",
            "user": "Write a short story about {{ inputs.topic }} that uses those facts.",
            "gen": {"max_tokens": 96},
        },
        {"id": "title", "user": "Give the story a title.", "gen": {"max_tokens": 24}},
    ],
    "output": {"value": {"title": "{{ steps.title }}", "story": "{{ steps.story }}"}},
}


class _Chaos:
    """The scenario's state: the cluster, the store, what was submitted and done."""

    def __init__(self, cluster: Cluster, private: PrivateRedis, api: Client) -> None:
        self.cluster = cluster
        self.private = private
        self.api = api
        self.store = RunStore(
            redis.Redis.from_url(private.url, socket_timeout=10),
            prefix=cluster.config.prefix,
            lease_s=LEASE_S,
        )
        self.runs: list[str] = []
        self.batches: list[str] = []
        self.kills: list[dict[str, Any]] = []
        self.blows: dict[str, Any] = {}
        self.unplanned_restarts: list[str] = []

    # -- load ---------------------------------------------------------------------------

    def submit(self, n: int) -> None:
        for _ in range(n):
            topic = TOPICS[len(self.runs) % len(TOPICS)]
            self.runs.append(self.api.submit(PROGRAM, {"topic": topic})["id"])

    def submit_batch(self, n: int) -> str:
        lines = [
            {"custom_id": f"line-{i}", "inputs": {"topic": TOPICS[i % len(TOPICS)]}}
            for i in range(n)
        ]
        batch_id = str(self.api.create_batch(PROGRAM, lines)["id"])
        self.batches.append(batch_id)
        return batch_id

    def line_runs(self, batch_id: str) -> list[str]:
        return [run_id for _, run_id in BatchStore(self.store).lines(batch_id, 0, -1)]

    def all_runs(self) -> list[str]:
        return self.runs + [r for b in self.batches for r in self.line_runs(b)]

    def unfinished(self) -> int:
        pipe = self.store.redis.pipeline()
        for run_id in self.all_runs():
            pipe.hget(self.store.keys.run(run_id), "status")
        return sum(as_str(s) not in ("succeeded", "failed", "cancelled") for s in pipe.execute())

    def settled(self) -> bool:
        """Every run final (children that died meanwhile are restarted)."""
        self.keep_alive()
        return self.unfinished() == 0

    def keep_alive(self) -> None:
        """Restart a child that died without being killed by the bench (reported)."""
        for name in self.cluster.names():
            if self.cluster.exit_code(name) is not None:
                self.unplanned_restarts.append(name)
                progress("chaos", f"{name} exited on its own; restarting it")
                self.cluster.restart(name)

    # -- blows --------------------------------------------------------------------------

    def kill_workers(self, kills: int, *, top_up: int, deadline_s: float) -> None:
        pids = {}
        deadline = time.monotonic() + deadline_s
        while len(self.kills) < kills and time.monotonic() < deadline:
            self.keep_alive()
            pids = {self.cluster.pid(name): name for name in WORKERS}
            flying = [f for f in in_flight(self.store) if _pid(f.worker) in pids]
            if not flying:
                if self.unfinished() < 2:
                    self.submit(top_up)
                time.sleep(0.2)
                continue
            held: dict[str, list[int]] = {}
            for raw in self.store.redis.zrange(self.store.keys.running, 0, -1):
                run = self.store.get(as_str(raw))
                if run is not None and run.worker:
                    held.setdefault(run.worker, []).append(run.attempt)
            victim = pick_worker(flying, held, self.store.max_attempts)
            if victim is None:
                time.sleep(0.2)
                continue
            name = pids[_pid(victim)]
            os.kill(_pid(victim), signal.SIGKILL)
            dict(self.cluster.children)[name].wait(timeout=30)  # reaped before its successor
            new_pid = self.cluster.restart(name)
            steps = [f"{f.run_id[:8]}:{f.step}@{f.attempt}" for f in flying if f.worker == victim]
            self.kills.append({"worker": name, "pid": _pid(victim), "in_step": steps})
            progress("chaos", f"kill {len(self.kills)}/{kills}: {name} mid-step {steps}")
            # the next kill waits for the new worker to be taking runs
            self._wait(lambda p=new_pid: _alive(self.store, p), 60)

    def restart_redis(self, batch_id: str, *, deadline_s: float) -> None:
        total = len(self.line_runs(batch_id))

        def mid_batch() -> bool:
            done = self.store.batch_progress(batch_id)
            counted = done.completed + done.failed
            return counted >= max(1, total // 4) and counted < total

        landed = self._wait(mid_batch, deadline_s)
        done = self.store.batch_progress(batch_id)
        flying = len(in_flight(self.store))
        progress("chaos", f"restarting Redis mid-batch ({done.completed + done.failed}/{total})")
        down_s = self.private.restart()
        self.blows["redis"] = {
            "lines_counted_before": done.completed + done.failed,
            "lines": total,
            "steps_in_flight": flying,
            "mid_batch": landed,
            "down_s": round(down_s, 2),
        }

    def restart_engine(self, *, top_up: int, deadline_s: float) -> None:
        if self.unfinished() < 2:
            self.submit(top_up)
        landed = self._wait(lambda: bool(in_flight(self.store)), deadline_s)
        flying = len(in_flight(self.store))
        progress("chaos", f"killing the engine with {flying} steps in flight, restarting it")
        t0 = time.monotonic()
        os.kill(self.cluster.pid("engine0"), signal.SIGKILL)
        self.cluster.restart("engine0")
        up = self._wait(lambda: _healthy(self.cluster.engine_url), 180)
        self.blows["engine"] = {
            "steps_in_flight": flying,
            "mid_step": landed,
            "back_up": up,
            "down_s": round(time.monotonic() - t0, 2),
        }

    def _wait(self, condition: Any, timeout_s: float) -> bool:
        """Poll ``condition`` (Redis errors while it restarts read as False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if condition():
                    return True
            except (redis.RedisError, httpx.HTTPError):
                pass
            time.sleep(0.2)
        return False

    # -- the audit ----------------------------------------------------------------------

    def evidence(self) -> tuple[list[RunEvidence], list[BatchEvidence]]:
        runs = [self._run_evidence(run_id) for run_id in self.all_runs()]
        batches = []
        for batch_id in self.batches:
            record = BatchStore(self.store).get(batch_id)
            progress_ = self.store.batch_progress(batch_id)
            marks = self.store.redis.hgetall(self.store.keys.batch_lines(batch_id))
            batches.append(
                BatchEvidence(
                    batch_id=batch_id,
                    total=record.total if record else 0,
                    completed=progress_.completed,
                    failed=progress_.failed,
                    marks={as_str(k): as_str(v) for k, v in marks.items()},
                    line_runs=self.line_runs(batch_id),
                )
            )
        return runs, batches

    def _run_evidence(self, run_id: str) -> RunEvidence:
        run = self.store.get(run_id)
        events: list[tuple[str, dict[str, Any]]] = []
        after = "0-0"
        while True:
            page = self.store.read_events(run_id, after, count=1000)
            if not page:
                break
            events += [(kind, data) for _, kind, data in page]
            after = page[-1][0]
        if run is None:
            return RunEvidence(run_id, None, None, events)
        code = (run.error or {}).get("code")
        return RunEvidence(run_id, run.status, code, events)


def _pid(worker: str) -> int:
    return int(worker.rsplit(":", 1)[-1])


def _alive(store: RunStore, pid: int) -> bool:
    return any(_pid(w) == pid for w in store.alive_workers(limit=100))


def _healthy(url: str) -> bool:
    return httpx.get(f"{url}/health", timeout=2).status_code == 200


def run(*, quick: bool) -> Report:
    kills = 5 if quick else 20
    n_runs = 12 if quick else 40
    n_lines = 12 if quick else 24
    settle_s = 600 if quick else 1200
    report = Report(
        "chaos",
        raw={"kills_planned": kills, "runs_first": n_runs, "batch_lines": n_lines,
             "lease_s": LEASE_S, "workers": len(WORKERS), "concurrency_per_worker": 2},
    )  # fmt: skip
    started = time.monotonic()
    env = {
        "SGFLOW_LEASE_S": str(LEASE_S),
        "SGFLOW_STALE_QUEUED_S": "120",
        "SGFLOW_MAX_CONCURRENT_RUNS_PER_TENANT": "1000",
    }
    with TemporaryDirectory(prefix="sgflow-bench-chaos-") as tmp:
        private = PrivateRedis(Path(tmp) / "redis")
        private.start()
        progress("chaos", f"private Redis (AOF always) on {private.url}; starting the cluster")
        config = ClusterConfig(
            redis_url=private.url,
            prefix=f"sgflow-bench-chaos-{uuid.uuid4().hex[:8]}:",
            data_dir=Path(tmp) / "cluster",
            workers=len(WORKERS),
            concurrency=2,
            router=False,
            engine_threads=1,  # llama.cpp threads spin: two on a shared 2-core box crawl
            env=env,
        )
        try:
            with Cluster(config) as cluster:
                key = cluster.create_key("bench")
                with Client(cluster.api_url, key, timeout=60) as api:
                    chaos = _Chaos(cluster, private, api)
                    chaos.submit(n_runs)
                    progress("chaos", f"{n_runs} runs submitted; killing workers mid-step")
                    chaos.kill_workers(kills, top_up=4, deadline_s=settle_s)
                    batch_id = chaos.submit_batch(n_lines)
                    progress("chaos", f"batch of {n_lines} lines submitted")
                    chaos.restart_redis(batch_id, deadline_s=settle_s)
                    chaos.restart_engine(top_up=4, deadline_s=settle_s)
                    progress("chaos", "waiting for every run to end")
                    settled = chaos._wait(chaos.settled, settle_s)
                    runs, batches = chaos.evidence()
                    chaos.store.redis.close()
        finally:
            private.stop()
    result = audit(runs, batches)
    wall_s = time.monotonic() - started
    summary = result.summary()
    report.raw.update(
        audit=summary,
        kills=chaos.kills,
        blows=chaos.blows,
        settled=settled,
        unplanned_restarts=chaos.unplanned_restarts,
        lost=result.lost[:20],
        recomputed=result.recomputed[:20],
        written_twice=result.written_twice[:20],
        wall_s=round(wall_s, 1),
    )
    report.tables["blows"] = [
        {"blow": "worker SIGKILL mid-step", "count": len(chaos.kills)},
        {"blow": "Redis restart mid-batch (AOF)", "count": int("redis" in chaos.blows)},
        {"blow": "engine SIGKILL + restart mid-step", "count": int("engine" in chaos.blows)},
    ]
    report.add("runs_lost", len(result.lost), ZERO, required=True)
    report.add("steps_recomputed_after_checkpoint", len(result.recomputed), ZERO, required=True)
    report.add("results_written_twice", len(result.written_twice), ZERO, required=True)
    report.add("worker_kills", len(chaos.kills), Target(">=", kills))
    report.add("runs", summary["runs"])
    report.add("runs_resumed", summary["resumed_runs"])
    report.add("steps_resumed_from_checkpoint", summary["steps_resumed"])
    report.add("wall_s", wall_s)
    report.notes.append(f"statuses {summary['statuses']}, attempts used {summary['attempts']}")
    report.notes.append(f"blows {chaos.blows}")
    if chaos.unplanned_restarts:
        report.notes.append(f"children that exited on their own: {chaos.unplanned_restarts}")
    for what, items in (("lost", result.lost), ("recomputed", result.recomputed),
                        ("written twice", result.written_twice)):  # fmt: skip
        if items:
            report.notes.append(f"{what}: {items[:5]}")
    return report
