"""A generation the engine gave up on (``finish_reason: abort``, e.g. a grammar dead end) is
never a step's answer: free text ends the run with the engine's code, a constrained step
counts it as an invalid attempt. The engine is a stand-in answering ``abort`` (the real
engine's dead end is tested in tests/engine/test_scheduler.py), and says so in its name."""

from __future__ import annotations

from typing import Any

from sglang.lang.backend.base_backend import BaseBackend
from sglang.lang.chat_template import get_chat_template

from sgflow.execution import execute
from sgflow.programs import compile_program
from sgflow.programs.model import Program


class AbortingStandIn(BaseBackend):  # type: ignore[misc]
    """Answers every generation with half a value and ``finish_reason: abort``."""

    def __init__(self) -> None:
        super().__init__()
        self.chat_template = get_chat_template("chatml")
        self.calls = 0

    def get_model_name(self) -> str:
        return "stand-in"

    def generate(self, s: Any, sampling_params: Any) -> tuple[str, dict[str, Any]]:
        self.calls += 1
        finish = {"type": "abort", "message": "no token continues", "code": "grammar.dead_end"}
        meta = {"finish_reason": finish, "prompt_tokens": 5, "completion_tokens": 3}
        return "SELECT", meta


def run(step: dict[str, Any]) -> Any:
    program = {"program": "gave-up", "policy": {"max_attempts": 2}, "steps": [step]}
    return compile_program(Program.model_validate(program))


def test_mocked_engine_abort_of_free_text_ends_the_run_with_the_engines_code() -> None:
    engine = AbortingStandIn()
    result = execute(run({"id": "say", "user": "Hi", "gen": {"max_tokens": 8}}), {}, engine)
    assert not result.ok and result.error is not None
    assert result.error["code"] == "grammar.dead_end" and result.error["step"] == "say"


def test_mocked_engine_abort_of_a_constrained_step_is_an_invalid_attempt_never_a_value() -> None:
    engine = AbortingStandIn()
    step = {"id": "sql", "user": "Query", "gen": {"grammar": "sql-select", "max_tokens": 8}}
    result = execute(run(step), {}, engine)
    assert not result.ok and result.error is not None
    assert result.error["code"] == "output.invalid" and engine.calls == 2
    assert "gave up" in result.error["details"][0]["message"]
