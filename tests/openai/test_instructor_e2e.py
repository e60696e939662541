"""Instructor, unchanged, against the real service (API + Celery worker + embedded engine).

Instructor 1.17.0 pins ``jiter<0.15`` and ``rich<15``, which resolve only with openai 3.3,
older than the project's own pin (3.57): installed beside the project it would downgrade the
SDK every other test uses. So it runs as its users run it, in a venv of its own with the
openai release it resolves to, built once per machine under the peers cache
(``$SGFLOW_PEERS_CACHE/clients/instructor-1.17.0``, about 100 MB, 30 s from PyPI), and
drives the service from ``instructor_driver.py``. Structure and validity only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest

from sgflow.grammars.validation import validation_errors
from sgflow.peers.cache import cache_root
from tests.service.stack import Stack

pytestmark = pytest.mark.engine

INSTRUCTOR = "instructor==1.17.0"
DRIVER = Path(__file__).with_name("instructor_driver.py")
VERDICT = {
    "type": "object",
    "properties": {
        "sentiment": {"enum": ["positive", "negative", "neutral"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "urgent": {"type": "boolean"},
    },
    "required": ["sentiment", "score", "urgent"],
    "additionalProperties": False,
}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def instructor_python() -> Path:
    """The venv's interpreter, built on first use into a temporary directory renamed into
    place, so a build cut short is never taken for a finished one (the interpreter and its
    site-packages work from the new path; only pip's own scripts would not, and are unused)."""
    home = cache_root() / "clients" / INSTRUCTOR.replace("==", "-")
    python = home / "bin" / "python"
    if python.exists():
        return python
    building = home.with_name(home.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
    subprocess.run(
        [str(building / "bin" / "python"), "-m", "pip", "install", "-q", INSTRUCTOR],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    shutil.rmtree(home, ignore_errors=True)  # a venv without its interpreter is no venv
    building.rename(home)
    return python


@pytest.fixture(scope="module")
def python() -> Path:
    return instructor_python()


@pytest.fixture(scope="module")
def model(engine_model: str) -> str:
    return engine_model


def drive(python: Path, stack: Stack, model: str, case: str) -> Any:
    done = subprocess.run(
        [str(python), str(DRIVER), f"{stack.url}/v1", stack.acme_key, model, case],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ok"], out["error"]
    return out["value"]


def test_the_venv_holds_instructor_with_its_own_openai(python: Path) -> None:
    versions = subprocess.run(
        [
            str(python),
            "-c",
            "import instructor, openai; print(instructor.__version__, openai.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert versions[0] == INSTRUCTOR.split("==")[1]
    assert versions[1].split(".")[0] == openai.__version__.split(".")[0]  # the same major line


# Mode.JSON and MD_JSON put the schema in the prompt and ask for `json_object` (any JSON
# object): nothing constrains the keys, so they hold only if the model follows the prompt,
# which SmolLM2-135M does not (it answered {"rating": "Excellent product"}). The README says so.
@pytest.mark.parametrize("mode", ["tools", "tools_strict", "json_schema"])
def test_instructor_gives_a_valid_model_in_every_schema_mode(
    python: Path, stack: Stack, model: str, mode: str
) -> None:
    verdict = drive(python, stack, model, mode)
    assert validation_errors(verdict, VERDICT) == []


def test_instructor_partial_streaming_grows_to_the_valid_model(
    python: Path, stack: Stack, model: str
) -> None:
    partials = drive(python, stack, model, "partial")["partials"]
    assert len(partials) >= 2, "the model arrives in pieces, as it is generated"
    filled = [sum(v is not None for v in p.values()) for p in partials]
    assert filled == sorted(filled), "each partial holds at least what the one before held"
    assert validation_errors(partials[-1], VERDICT) == []


def test_instructor_iterable_extracts_valid_items(python: Path, stack: Stack, model: str) -> None:
    people = drive(python, stack, model, "iterable")
    assert isinstance(people, list) and people
    for person in people:
        assert validation_errors(person, PERSON) == []


def test_instructor_create_with_completion_reports_finish_and_usage(
    python: Path, stack: Stack, model: str
) -> None:
    out = drive(python, stack, model, "with_completion")
    assert validation_errors(out["verdict"], VERDICT) == []
    assert out["finish_reason"] in ("tool_calls", "stop")
    assert out["usage"]["completion_tokens"] > 0 and out["usage"]["prompt_tokens"] > 0
