"""Streamed generation: ``step.delta`` events from the executor on the real engine and model,
and a sink that stops a generation in progress."""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import httpx
import pytest

from sgflow.execution import SgflowEndpoint, execute
from sgflow.execution.deltas import Pieces
from sgflow.execution.executor import DELTA_INTERVAL_S
from sgflow.programs import RunError, compile_program
from sgflow.programs.model import Program

pytestmark = pytest.mark.engine

LONG_PROMPT = (
    "Write a long, detailed essay about the history of the Roman Empire, with many sections."
)


@pytest.fixture(scope="module")
def endpoint(engine_url: str) -> SgflowEndpoint:
    return SgflowEndpoint(engine_url)


def compiled(steps: list[dict[str, Any]]) -> Any:
    return compile_program(Program.model_validate({"program": "streaming", "steps": steps}))


class Recorder:
    """An event sink that keeps ``(kind, data, time)``; thread-safe (forks call it from
    several threads)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], float]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        with self.lock:
            self.events.append((kind, data, time.monotonic()))

    def kinds(self, step: str) -> list[str]:
        return [k for k, d, _ in self.events if d.get("step") == step]

    def text(self, step: str, branch: int | None = None, attempt: int | None = None) -> str:
        return "".join(
            d["text"]
            for k, d, _ in self.events
            if k == "step.delta"
            and d["step"] == step
            and d["branch"] == branch
            and (attempt is None or d["attempt"] == attempt)
        )


def test_deltas_add_up_to_the_free_text_between_started_and_finished(
    endpoint: SgflowEndpoint,
) -> None:
    ir = compiled([{"id": "story", "user": LONG_PROMPT, "gen": {"max_tokens": 120}}])
    events = Recorder()
    result = execute(ir, {}, endpoint, on_event=events)
    assert result.ok, result.error
    kinds = events.kinds("story")
    assert kinds[0] == "step.started" and kinds[-1] == "step.finished"
    assert set(kinds[1:-1]) == {"step.delta"}
    deltas = [(d, t) for k, d, t in events.events if k == "step.delta"]
    assert len(deltas) >= 2, "120 tokens take longer than one delta interval"
    assert all(d["attempt"] == 1 and d["branch"] is None and d["text"] for d, _ in deltas)
    assert events.text("story") == result.steps["story"]
    # throttled: one delta per interval at most (the last one flushes the rest)
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(deltas[:-1])]
    assert all(gap >= DELTA_INTERVAL_S * 0.9 for gap in gaps), gaps
    assert result.trace[0].completion_tokens > 0 and result.trace[0].finish_reason


def test_constrained_and_forked_steps_stream_with_their_branch(endpoint: SgflowEndpoint) -> None:
    ir = compiled(
        [
            {
                "id": "person",
                "user": "Describe a person as JSON with a name and an age.",
                "gen": {
                    "max_tokens": 60,
                    "json_schema": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "maxLength": 20},
                            "age": {"type": "integer"},
                        },
                        "required": ["name", "age"],
                        "additionalProperties": False,
                    },
                },
            },
            {"id": "pick", "user": "Is that a real person?", "select": ["yes", "no"]},
            {
                "id": "facts",
                "fork": {
                    "n": 2,
                    "as": "i",
                    "steps": [
                        {
                            "id": "fact",
                            "user": "Write fact number {{ i }} about that person.",
                            "gen": {"max_tokens": 30},
                        }
                    ],
                },
            },
        ]
    )
    events = Recorder()
    result = execute(ir, {}, endpoint, on_event=events)
    assert result.ok, result.error
    person = events.text("person", attempt=result.trace[0].attempts)
    assert person.startswith("{")
    assert result.steps["person"] == json.loads(person)
    assert "step.delta" not in events.kinds("pick")
    for i in (0, 1):
        assert events.text("fact", branch=i) == result.steps["facts"][i]["fact"]
        branch_kinds = [k for k, d, _ in events.events if d.get("branch") == i]
        assert branch_kinds[0] == "step.started" and branch_kinds[-1] == "step.finished"


def test_without_a_sink_nothing_streams(endpoint: SgflowEndpoint) -> None:
    ir = compiled([{"id": "a", "user": "Say hello.", "gen": {"max_tokens": 12}}])
    streamed = Recorder()
    plain = execute(ir, {}, endpoint)
    with_sink = execute(ir, {}, endpoint, on_event=streamed)
    assert plain.ok and with_sink.ok
    assert plain.steps == with_sink.steps  # temperature 0: the same text either way
    assert plain.trace[0].completion_tokens == with_sink.trace[0].completion_tokens


def test_a_sink_that_raises_stops_the_generation(endpoint: SgflowEndpoint, engine_url: str) -> None:
    ir = compiled([{"id": "long", "user": LONG_PROMPT, "gen": {"max_tokens": 2000}}])
    seen: list[float] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "step.delta":
            seen.append(time.monotonic())
            if len(seen) == 2:
                raise RunError("run.cancelled", "stop")

    result = execute(ir, {}, endpoint, on_event=on_event)
    took = time.monotonic() - seen[-1]
    assert not result.ok and result.error is not None
    assert result.error["code"] == "run.cancelled"
    assert took < 1, took  # it returns at once, not after 2000 tokens
    assert [t.status for t in result.trace] == ["cancelled"]  # the step never finished
    assert engine_idle(engine_url), "the engine kept generating after the client left"


def engine_idle(engine_url: str, within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        info = httpx.get(f"{engine_url}/server_info", timeout=5).json()
        if info["internal_states"][0]["num_running_reqs"] == 0:
            return True
        time.sleep(0.1)
    return False


def test_pieces_hold_back_a_stop_string_until_the_end() -> None:
    got: list[tuple[str, bool]] = []
    pieces = Pieces(lambda text, final: got.append((text, final)), holdback=len("<|im_end|>"))
    for text in ["Hello", "Hello world, this", "Hello world, this is it<|im", "Hello world, thi"]:
        pieces.update(text)
    pieces.finish("Hello world, this is it")
    assert "".join(t for t, _ in got) == "Hello world, this is it"
    assert got[-1][1] is True and not any(final for _, final in got[:-1])
