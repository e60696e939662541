"""``static_prefix``: the text every run of a program starts with, whatever its inputs.

Checked against what the SGLang frontend really sends: every ``/generate`` text of a run
starts with it, for two different inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sgflow.execution import SgflowEndpoint, execute
from sgflow.programs import compile_program, load_program
from sgflow.programs.compiler import prefix_layout, static_prefix
from sgflow.programs.model import Program

LIBRARY = Path(__file__).parents[2] / "sgflow" / "programs" / "library"


def library(name: str):  # type: ignore[no-untyped-def]
    path = LIBRARY / f"{name}.yaml"
    return compile_program(load_program(str(path)), base_dir=str(path.parent))


def test_ticket_triage_prefix_is_system_examples_and_the_static_head() -> None:
    prefix = static_prefix(library("ticket-triage"))
    assert prefix is not None
    assert prefix.startswith("<|im_start|>system\nYou are a support triage assistant")
    assert "Category: billing. Urgency: high.<|im_end|>\n" in prefix
    assert prefix.endswith("<|im_start|>user\nTicket: ")  # stops at {{ inputs.ticket }}


def program(system: str, user: str) -> Any:
    body = {
        "program": "p",
        "version": 1,
        "inputs": {"type": "object", "properties": {"x": {"type": "string"}}},
        "system": system,
        "steps": [{"id": "a", "user": user, "gen": {"max_tokens": 4}}],
    }
    return compile_program(Program.model_validate(body))


def test_prefix_stops_at_the_first_template_expression() -> None:
    long = "Rules of the house. " * 8
    prefix = static_prefix(program(long + "Customer: {{ inputs.x }}", "Hello"))
    assert prefix == "<|im_start|>system\n" + long + "Customer: "
    assert static_prefix(program("{{ inputs.x }} " + long, "Hi")) is None  # nothing static


def test_a_static_first_turn_is_included_whole() -> None:
    prefix = static_prefix(program("Be brief. " * 10, "Say hi to {{ inputs.x }}."))
    assert prefix is not None
    assert prefix.endswith("<|im_end|>\n<|im_start|>user\nSay hi to ")


class Recording(SgflowEndpoint):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.texts: list[str] = []

    def generate(self, s: Any, sampling_params: Any) -> Any:
        self.texts.append(s.text_)
        return super().generate(s, sampling_params)

    def select(self, s: Any, *args: Any, **kwargs: Any) -> Any:
        self.texts.append(s.text_)
        return super().select(s, *args, **kwargs)


@pytest.mark.engine
def test_every_request_of_a_run_starts_with_the_static_prefix(engine_url: str) -> None:
    ir = library("ticket-triage")
    prefix = static_prefix(ir)
    assert prefix is not None
    endpoint = Recording(engine_url)
    for ticket in ("My password reset link expired.", "The app crashes on start."):
        endpoint.texts.clear()
        result = execute(ir, {"ticket": ticket}, endpoint)
        assert result.ok, result.error
        assert endpoint.texts and all(t.startswith(prefix) for t in endpoint.texts)
        assert any(ticket in t for t in endpoint.texts)


def test_layout_names_the_turn_that_breaks_the_prefix_and_what_follows() -> None:
    rules = "Answer in one word. " * 20
    layout = prefix_layout(program("Customer {{ inputs.x }}. " + rules, "Hello"))
    assert layout.breaks_at == "system"
    assert layout.text == "<|im_start|>system\nCustomer "
    assert layout.static_after >= len(rules.strip())  # the rules and the user turn
    whole = prefix_layout(program(rules, "Hi"))
    assert (whole.breaks_at, whole.static_after) == (None, 0)


def test_check_reports_the_shared_prefix_and_hints_at_a_better_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from sgflow.cli import main

    body = {
        "program": "p",
        "version": 1,
        "inputs": {"type": "object", "properties": {"x": {"type": "string"}}},
        "system": "Customer: {{ inputs.x }}. " + "Follow the house rules. " * 12,
        "steps": [{"id": "a", "user": "Hi", "gen": {"max_tokens": 4}}],
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(body))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "shared prefix: 29 characters, up to the first input in system" in out
    assert "hint:" in out and "characters of fixed text come after an input in system" in out
    triage = LIBRARY / "ticket-triage.yaml"
    assert main(["check", str(triage)]) == 0
    assert "hint:" not in capsys.readouterr().out
