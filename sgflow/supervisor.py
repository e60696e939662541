"""Keep ``sgflow up``'s children running: restart what crashes, with capped exponential backoff.

A child (an engine, the router, a worker, the API) that exits on its own is restarted after
``base_s * 2**(n-1)`` seconds, capped at ``cap_s``, where ``n`` counts its crashes in a row
that came within ``stable_s`` of its start ("fast" crashes). A child that ran for ``stable_s``
or more before it crashed starts again from ``n = 1``: one crash a day is restarted at once,
forever. After ``max_fast_crashes`` fast crashes in a row the supervisor gives up, and
``sgflow up`` stops everything with a message naming the child and its log. The embedded
Valkey is not restarted: its death ends ``sgflow up`` (the workers and the API would otherwise
run against a store that is gone).

Each exit and restart is one structured log line (logger ``sgflow.up``): ``child``,
``exit_code``, ``attempt`` (the ``n`` above), ``next_delay_s``; then ``pid`` once restarted.
Meanwhile the API keeps answering, and ``/readyz`` names what is down (``engines``,
``workers``, ``router``).

:class:`RestartPolicy` and :class:`Supervisor` are pure (the clock is injected);
:func:`supervise` is the loop over a :class:`Children` (``sgflow.cluster.Cluster``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Children", "GiveUp", "Restart", "RestartPolicy", "Supervisor", "supervise"]

log = logging.getLogger("sgflow.up")


@dataclass(frozen=True)
class RestartPolicy:
    """``base_s`` (default 1) the first delay, doubled per fast crash up to ``cap_s``
    (default 30); ``stable_s`` (default 60) the uptime after which a crash is not "fast";
    ``max_fast_crashes`` (default 5) fast crashes in a row before giving up. Raises
    ``ValueError`` for a value out of range."""

    base_s: float = 1.0
    cap_s: float = 30.0
    stable_s: float = 60.0
    max_fast_crashes: int = 5

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s or self.stable_s <= 0:
            raise ValueError("need 0 < base_s <= cap_s and stable_s > 0")
        if self.max_fast_crashes < 1:
            raise ValueError("max_fast_crashes must be at least 1")

    def delay(self, attempt: int) -> float:
        """The wait before restart number ``attempt`` (1, 2, …) of a crash streak."""
        return float(min(self.cap_s, self.base_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Restart:
    """Restart ``child`` at ``due`` (clock time): ``attempt`` in the streak, ``delay_s``."""

    child: str
    exit_code: int
    attempt: int
    delay_s: float
    due: float


@dataclass(frozen=True)
class GiveUp:
    """``child`` crashed ``crashes`` times in a row, each within ``stable_s`` of its start."""

    child: str
    exit_code: int
    crashes: int
    stable_s: float

    @property
    def message(self) -> str:
        return (
            f"{self.child} crashed {self.crashes} times in a row, each within "
            f"{self.stable_s:g} s of starting (last exit code {self.exit_code}); giving up"
        )


class Supervisor:
    """The restart decisions for named children, by ``policy`` and ``clock`` (default
    ``time.monotonic``)."""

    def __init__(
        self, policy: RestartPolicy | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.clock = clock
        self._started: dict[str, float] = {}
        self._streak: dict[str, int] = {}
        self._pending: dict[str, Restart] = {}

    def started(self, child: str) -> None:
        """``child`` (re)started now."""
        self._started[child] = self.clock()
        self._pending.pop(child, None)

    def pending(self, child: str) -> bool:
        """Whether ``child`` is waiting for its restart."""
        return child in self._pending

    def exited(self, child: str, exit_code: int) -> Restart | GiveUp:
        """``child`` exited with ``exit_code``: when to restart it, or that it is hopeless."""
        now = self.clock()
        uptime = now - self._started.get(child, now)
        streak = 1 if uptime >= self.policy.stable_s else self._streak.get(child, 0) + 1
        self._streak[child] = streak
        if streak > self.policy.max_fast_crashes:
            return GiveUp(child, exit_code, streak, self.policy.stable_s)
        delay = self.policy.delay(streak)
        decision = Restart(child, exit_code, streak, delay, now + delay)
        self._pending[child] = decision
        return decision

    def due(self) -> list[Restart]:
        """The restarts whose delay has passed, oldest first."""
        now = self.clock()
        return sorted((r for r in self._pending.values() if r.due <= now), key=lambda r: r.due)


class Children(Protocol):
    """What :func:`supervise` needs of a cluster."""

    def names(self) -> list[str]: ...

    def exit_code(self, name: str) -> int | None: ...

    def restart(self, name: str) -> int: ...

    def store_alive(self) -> bool: ...

    def log_path(self, name: str) -> str: ...


def supervise(
    children: Children,
    stop: threading.Event,
    *,
    policy: RestartPolicy | None = None,
    poll_s: float = 0.2,
) -> str | None:
    """Watch ``children`` until ``stop`` is set (returns ``None``) or a child is hopeless or
    the store died (returns the reason, for ``sgflow up`` to print before stopping)."""
    supervisor = Supervisor(policy)
    for name in children.names():
        supervisor.started(name)
    while not stop.wait(poll_s):
        if not children.store_alive():
            return "the embedded Valkey exited; its data stays in the data folder"
        for name in children.names():
            code = children.exit_code(name)
            if code is None or supervisor.pending(name):
                continue
            decision = supervisor.exited(name, code)
            if isinstance(decision, GiveUp):
                log.error(
                    "child crashed too often; giving up",
                    extra={"child": name, "exit_code": code, "crashes": decision.crashes},
                )
                return f"{decision.message} (log: {children.log_path(name)})"
            log.warning(
                "child exited; restarting",
                extra={
                    "child": name,
                    "exit_code": code,
                    "attempt": decision.attempt,
                    "next_delay_s": decision.delay_s,
                },
            )
        for restart in supervisor.due():
            pid = children.restart(restart.child)
            supervisor.started(restart.child)
            log.info(
                "child restarted",
                extra={"child": restart.child, "pid": pid, "attempt": restart.attempt},
            )
    return None
