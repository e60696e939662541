"""The chaos bench's audit on synthetic event histories: each property is found when it is
broken and not reported when it holds (the histories are shaped as the runner writes them:
checkpoint, then ``step.finished``; a resume announces ``run.resumed`` and skips ahead)."""

from __future__ import annotations

from typing import Any

import pytest

from sgflow.bench.chaos_audit import (
    BatchEvidence,
    RunEvidence,
    audit,
    audit_batch,
    loss_reason,
    recomputed_steps,
    result_writes,
)


def ev(kind: str, **data: Any) -> tuple[str, dict[str, Any]]:
    return (kind, data)


def started(step: str, branch: int | None = None) -> tuple[str, dict[str, Any]]:
    return ev("step.started", step=step, branch=branch)


def finished(step: str, branch: int | None = None) -> tuple[str, dict[str, Any]]:
    return ev("step.finished", step=step, branch=branch, status="ok")


QUEUED = [ev("run.queued")]
FINISHED = [ev("run.finished", status="succeeded", attempt=2)]

# killed in step b, resumed after a: a is put back, b is generated again (it had no checkpoint)
KILLED_AND_RESUMED = [
    *QUEUED,
    ev("run.started", attempt=1, worker="w1"),
    started("a"),
    ev("step.delta", step="a", text="x"),
    finished("a"),
    started("b"),
    ev("step.delta", step="b", text="y"),
    ev("run.requeued", attempt=1),
    ev("run.started", attempt=2, worker="w2"),
    ev("run.resumed", steps=["a"]),
    started("b"),
    finished("b"),
    *FINISHED,
]

# the bug the audit exists for: a resume that generates a checkpointed step again
RESUMED_BUT_REDONE = [
    *QUEUED,
    ev("run.started", attempt=1, worker="w1"),
    started("a"),
    finished("a"),
    started("b"),
    ev("run.requeued", attempt=1),
    ev("run.started", attempt=2, worker="w2"),
    started("a"),
    finished("a"),
    started("b"),
    finished("b"),
    *FINISHED,
]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (KILLED_AND_RESUMED, []),
        (RESUMED_BUT_REDONE, ["a", "a"]),
        # an engine retry inside one attempt resumes too: finished b must not start again
        ([started("a"), finished("a"), ev("run.retrying", retry=1), started("a")], ["a"]),
        # a skipped step (condition false) finishes without starting; finishing it again is a
        # recompute as well
        ([finished("s"), started("t"), ev("run.resumed", steps=["s"]), finished("s")], ["s"]),
        # fork branches are not checkpointed one by one: redoing them is allowed
        (
            [
                started("f"),
                started("q", 0),
                finished("q", 0),
                ev("run.resumed", steps=[]),
                started("f"),
                started("q", 0),
                finished("q", 0),
                finished("f"),
            ],
            [],
        ),
        # a step interrupted before its checkpoint is generated again: not a recompute
        ([started("a"), started("a"), finished("a")], []),
    ],
)
def test_recomputed_steps(events: list[tuple[str, dict[str, Any]]], expected: list[str]) -> None:
    assert recomputed_steps(events) == expected


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        (RunEvidence("r", "succeeded"), None),
        (RunEvidence("r", "cancelled"), None),
        (RunEvidence("r", "failed", "output.invalid"), None),  # the program's own failure
        (RunEvidence("r", None), "no record"),
        (RunEvidence("r", "running"), "stuck running"),
        (RunEvidence("r", "queued"), "stuck queued"),
        (RunEvidence("r", "failed", "run.max_attempts"), "failed run.max_attempts"),
        (RunEvidence("r", "failed", "engine.unavailable"), "failed engine.unavailable"),
        (RunEvidence("r", "failed", "run.time_limit"), "failed run.time_limit"),
    ],
)
def test_loss_reason(run: RunEvidence, reason: str | None) -> None:
    assert loss_reason(run) == reason


def test_result_writes_counts_run_finished() -> None:
    assert result_writes(KILLED_AND_RESUMED) == 1
    assert result_writes([*KILLED_AND_RESUMED, *FINISHED]) == 2
    assert result_writes(QUEUED) == 0


def test_audit_of_a_clean_history_reports_nothing_and_counts_the_resumes() -> None:
    result = audit([RunEvidence("r1", "succeeded", None, KILLED_AND_RESUMED)])
    assert result.ok
    assert result.summary() == {
        "runs": 1,
        "lost": 0,
        "recomputed": 0,
        "written_twice": 0,
        "resumed_runs": 1,
        "steps_resumed": 1,
        "attempts": {2: 1},
        "statuses": {"succeeded": 1},
    }


def test_audit_finds_each_property_broken() -> None:
    runs = [
        RunEvidence("ok", "succeeded", None, KILLED_AND_RESUMED),
        RunEvidence("redone", "succeeded", None, RESUMED_BUT_REDONE),
        RunEvidence("twice", "succeeded", None, [*KILLED_AND_RESUMED, *FINISHED]),
        RunEvidence("stuck", "running", None, KILLED_AND_RESUMED[:7]),
        RunEvidence("gone", None),
        RunEvidence("silent", "succeeded", None, KILLED_AND_RESUMED[:-1]),
    ]
    result = audit(runs)
    assert not result.ok
    assert result.recomputed == [("redone", "a"), ("redone", "a")]
    assert result.written_twice == [("twice", "2 run.finished")]
    assert sorted(result.lost) == [
        ("gone", "no record"),
        ("silent", "final without run.finished"),
        ("stuck", "stuck running"),
    ]
    assert result.statuses == {"succeeded": 4, "running": 1, "missing": 1}


def batch(**overrides: Any) -> BatchEvidence:
    fields: dict[str, Any] = {
        "batch_id": "b",
        "total": 3,
        "completed": 2,
        "failed": 1,
        "marks": {"l1": "succeeded", "l2": "succeeded", "l3": "failed"},
        "line_runs": ["l1", "l2", "l3"],
    }
    return BatchEvidence(**{**fields, **overrides})


LINE_STATUS = {"l1": "succeeded", "l2": "succeeded", "l3": "failed"}


@pytest.mark.parametrize(
    ("evidence", "problems"),
    [
        (batch(), []),
        (batch(completed=3), ["counted 4 of 3 lines", "counters say 4, marks 3",
                              "completed 3, succeeded marks 2"]),
        (batch(marks={"l1": "succeeded", "l2": "succeeded", "l3": "failed", "lx": "failed"}),
         ["4 marks for 3 lines", "counters say 3, marks 4"]),
        (batch(marks={"l1": "succeeded", "l2": "failed", "l3": "succeeded"}),
         ["line l2 counted failed, run succeeded", "line l3 counted succeeded, run failed"]),
    ],
)  # fmt: skip
def test_audit_batch(evidence: BatchEvidence, problems: list[str]) -> None:
    assert audit_batch(evidence, LINE_STATUS) == problems


def test_audit_reports_uncounted_lines_as_lost_and_double_counts_as_written_twice() -> None:
    runs = [RunEvidence(r, s, None, [*QUEUED, *FINISHED]) for r, s in LINE_STATUS.items()]
    assert audit(runs, [batch()]).ok
    short = audit(runs, [batch(failed=0, marks={"l1": "succeeded", "l2": "succeeded"})])
    assert short.lost == [("b", "1 of 3 lines not counted")]
    assert short.written_twice == []
    over = audit(runs, [batch(failed=2)])
    assert over.lost == []
    assert [what for _, what in over.written_twice] == [
        "counted 4 of 3 lines",
        "counters say 4, marks 3",
    ]


def test_pick_worker_spares_runs_on_their_last_attempt() -> None:
    from sgflow.bench.chaos_blows import InFlight, pick_worker

    flying = [InFlight("r1", "h:1", 1, "a"), InFlight("r2", "h:2", 2, "a")]
    assert pick_worker(flying, {"h:1": [1, 2], "h:2": [1]}, 3) == "h:2"  # fewest attempts used
    assert pick_worker(flying, {"h:1": [1, 3], "h:2": [2]}, 3) == "h:2"  # h:1 holds a last try
    assert pick_worker(flying, {"h:1": [3], "h:2": [3]}, 3) is None
    assert pick_worker([], {"h:1": [1]}, 3) is None  # nothing generating: nothing to kill


def test_a_missed_required_target_fails_the_bench(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from sgflow.bench import suite
    from sgflow.bench.report import Report, Target

    def scenario(lost: int) -> Report:
        report = Report("fake")
        report.add("runs_lost", lost, Target("<=", 0), required=True)
        report.add("a_ratio", 0.1, Target(">=", 1.0))  # missed, but only watched
        return report

    for lost, code in ((0, 0), (1, 1)):
        fake = type("M", (), {"run": staticmethod(lambda *, quick, n=lost: scenario(n))})
        monkeypatch.setattr(suite.importlib, "import_module", lambda name, f=fake: f)
        assert suite.main("chaos", quick=True, out_dir=str(tmp_path)) == code
    assert "chaos" in suite.SCENARIOS and "chaos" in suite.SOLO
