"""The blows of ``sgflow bench chaos`` and the private Redis they are dealt on.

- :class:`PrivateRedis`: a ``redis-server`` of the bench's own on a free port, with AOF
  fsynced on every write (``--appendfsync always``) and no RDB snapshots, in a temporary
  folder; :meth:`PrivateRedis.restart` stops it (SIGTERM) and starts it again on the same port
  and folder, so it comes back from its AOF alone. The machine's own Redis is never touched.
- :func:`in_flight`: the runs a step is being generated for right now (their last event is
  ``step.started`` or ``step.delta``), with the worker holding each.
- :func:`pick_worker`: the worker to SIGKILL: one generating a step, all of whose runs have an
  attempt left (a run killed ``max_attempts`` times is given up by design; the bench tests
  that kills lose nothing, not that the cap is infinite).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis

from sgflow.engine.launcher import free_port
from sgflow.store import RunStore
from sgflow.store.records import as_str

__all__ = ["InFlight", "PrivateRedis", "in_flight", "pick_worker"]

IN_STEP = ("step.started", "step.delta")


class PrivateRedis:
    """``redis-server`` on 127.0.0.1 with AOF ``always`` in ``data_dir``; ``url`` once
    started. Raises ``RuntimeError`` when no ``redis-server`` is installed or it does not
    answer within ``startup_s``."""

    def __init__(self, data_dir: Path, *, startup_s: float = 30.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("sgflow bench chaos needs redis-server (apt-get install redis)")
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.startup_s = startup_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.data_dir / "redis.log").open("ab")
        self._proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_s
        client = redis.Redis.from_url(self.url, socket_timeout=2)
        try:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: see {self.data_dir / 'redis.log'}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:  # not listening, or still loading its AOF
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer in {self.startup_s:g} s")
                time.sleep(0.1)
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM: it fsyncs the AOF and exits) and wait for the process."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, down_s: float = 2.0) -> float:
        """Stop, stay down ``down_s`` (clients see refused connections), start again from
        the AOF; the seconds it was unreachable."""
        t0 = time.monotonic()
        self.stop()
        time.sleep(down_s)
        self.start()
        return time.monotonic() - t0


@dataclass(frozen=True)
class InFlight:
    run_id: str
    worker: str  # the run record's worker: "<host>:<pid>"
    attempt: int
    step: str


def in_flight(store: RunStore) -> list[InFlight]:
    """Running runs whose last event says a step is being generated."""
    found = []
    for raw in store.redis.zrange(store.keys.running, 0, -1):
        run_id = as_str(raw)
        run = store.get(run_id)
        if run is None or run.status != "running" or not run.worker:
            continue
        last = store.redis.xrevrange(store.keys.events(run_id), count=1)
        if not last:
            continue
        fields = {as_str(k): as_str(v) for k, v in (last[0][1] or {}).items()}
        if fields.get("kind") not in IN_STEP:
            continue
        data = json.loads(fields.get("data") or "{}")
        found.append(InFlight(run_id, run.worker, run.attempt, str(data.get("step"))))
    return found


def pick_worker(
    flying: list[InFlight], held_attempts: dict[str, list[int]], max_attempts: int
) -> str | None:
    """The worker id to kill: one with a step in flight, none of whose runs
    (``held_attempts``: worker id -> the attempts of the runs it holds) is on its last
    attempt; among those, the one whose runs have used the fewest attempts. None if none."""
    candidates = []
    for worker in {f.worker for f in flying}:
        attempts = held_attempts.get(worker, [])
        if all(a < max_attempts for a in attempts):
            candidates.append((max(attempts, default=0), worker))
    return min(candidates)[1] if candidates else None
