"""The restart policy of ``sgflow up`` (pure, with a fake clock) and the supervision loop over
stand-in children (the real processes are in ``tests/test_up.py``)."""

from __future__ import annotations

import logging
import threading

import pytest

from sgflow.supervisor import GiveUp, Restart, RestartPolicy, Supervisor, supervise


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_and_is_capped() -> None:
    policy = RestartPolicy(base_s=1, cap_s=10)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


@pytest.mark.parametrize(
    "kwargs",
    [{"base_s": 0}, {"base_s": 5, "cap_s": 1}, {"stable_s": 0}, {"max_fast_crashes": 0}],
)
def test_a_bad_policy_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


def test_fast_crashes_back_off_then_give_up() -> None:
    clock = Clock()
    sup = Supervisor(RestartPolicy(base_s=1, cap_s=4, stable_s=60, max_fast_crashes=3), clock=clock)
    sup.started("worker0")
    delays = []
    for _ in range(3):
        clock.now += 2  # crashes 2 s after each start
        decision = sup.exited("worker0", 1)
        assert isinstance(decision, Restart) and sup.pending("worker0")
        delays.append(decision.delay_s)
        assert sup.due() == []  # not yet
        clock.now += decision.delay_s
        assert [r.child for r in sup.due()] == ["worker0"]
        sup.started("worker0")
        assert not sup.pending("worker0")
    assert delays == [1, 2, 4]
    clock.now += 2
    gave_up = sup.exited("worker0", 1)
    assert isinstance(gave_up, GiveUp)
    assert gave_up.message == (
        "worker0 crashed 4 times in a row, each within 60 s of starting (last exit code 1); "
        "giving up"
    )


def test_a_stable_period_resets_the_backoff() -> None:
    clock = Clock()
    sup = Supervisor(RestartPolicy(base_s=1, stable_s=60, max_fast_crashes=2), clock=clock)
    sup.started("engine0")
    for _ in range(10):  # a crash every 61 s: never fast, restarted at once, never given up
        clock.now += 61
        decision = sup.exited("engine0", -9)
        assert isinstance(decision, Restart)
        assert (decision.attempt, decision.delay_s) == (1, 1)
        clock.now += 1
        sup.started("engine0")


def test_children_are_independent() -> None:
    clock = Clock()
    sup = Supervisor(RestartPolicy(base_s=1, max_fast_crashes=1), clock=clock)
    sup.started("a")
    sup.started("b")
    clock.now += 1
    assert isinstance(sup.exited("a", 1), Restart)
    assert isinstance(sup.exited("b", 1), Restart)
    clock.now += 1
    assert [r.child for r in sup.due()] == ["a", "b"]


class FakeChildren:
    """Children whose exits are scripted: ``crashes[name]`` more exits after each start."""

    def __init__(self, crashes: dict[str, int]) -> None:
        self.crashes = crashes
        self.running = {name: False for name in crashes}  # each starts crashed
        self.restarts: list[str] = []
        self.valkey = True

    def names(self) -> list[str]:
        return list(self.crashes)

    def exit_code(self, name: str) -> int | None:
        return None if self.running[name] else -9

    def restart(self, name: str) -> int:
        self.restarts.append(name)
        self.crashes[name] -= 1
        self.running[name] = self.crashes[name] <= 0
        return 4242

    def store_alive(self) -> bool:
        return self.valkey

    def log_path(self, name: str) -> str:
        return f"/logs/{name}.log"


def test_supervise_restarts_logs_and_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    children = FakeChildren({"engine0": 2, "worker0": 99})
    stop = threading.Event()
    policy = RestartPolicy(base_s=0.01, cap_s=0.02, max_fast_crashes=3)
    with caplog.at_level(logging.INFO, logger="sgflow.up"):
        reason = supervise(children, stop, policy=policy, poll_s=0.005)
    assert reason is not None
    assert reason.startswith("worker0 crashed 4 times in a row")
    assert reason.endswith("(log: /logs/worker0.log)")
    assert children.restarts.count("engine0") == 2  # came back after two restarts
    assert children.restarts.count("worker0") == 3
    exits = [r for r in caplog.records if r.getMessage() == "child exited; restarting"]
    first = exits[0]
    assert (first.child, first.exit_code, first.attempt, first.next_delay_s) == (  # type: ignore[attr-defined]
        "engine0",
        -9,
        1,
        0.01,
    )
    worker_delays = [r.next_delay_s for r in exits if r.child == "worker0"]  # type: ignore[attr-defined]
    assert worker_delays == [0.01, 0.02, 0.02]
    restarted = [r for r in caplog.records if r.getMessage() == "child restarted"]
    assert {r.pid for r in restarted} == {4242}  # type: ignore[attr-defined]


def test_supervise_stops_when_asked_and_when_the_store_dies() -> None:
    children = FakeChildren({"api": 0})
    children.running["api"] = True
    stop = threading.Event()
    stop.set()
    assert supervise(children, stop, poll_s=0.005) is None
    children.valkey = False
    reason = supervise(children, threading.Event(), poll_s=0.005)
    assert reason is not None and "Valkey exited" in reason
