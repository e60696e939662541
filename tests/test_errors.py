"""The one registry of error codes: every code documented, raised somewhere, one status
wherever it is answered; every error class in sgflow is a SgflowError."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from sgflow.client import ApiError as ClientApiError
from sgflow.engine.errors import BadRequest, ConstraintError, EngineError, Overloaded
from sgflow.errors import CODES, SgflowError, as_pointer, codes_table
from sgflow.grammars.errors import GrammarError
from sgflow.programs.errors import ProgramError, RunError
from sgflow.service.errors import ApiError
from sgflow.store import InvalidCursor, LeaseLost, MaxAttemptsExceeded, StoreError

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "sgflow").rglob("*.py"))
_CODE = re.compile(r"^[a-z]+\.[a-z_]+$")
# calls whose string arguments are error codes
_RAISERS = {
    "SgflowError",
    "ApiError",
    "RunError",
    "GrammarError",
    "ProgramError",
    "EngineError",
    "BadRequest",
    "ConstraintError",
    "error",  # the checker's self.error(code, ...)
}


def _views(tree: ast.AST) -> set[int]:
    """ids of string nodes inside the registry's views (``CODES = …``, ``_NAMES = …``)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id in ("CODES", "_NAMES") for t in targets):
                inside |= {id(n) for n in ast.walk(node)}
    return inside


def _strings() -> dict[str, set[str]]:
    """Every string constant of sgflow's sources (but the registry and its views), by file."""
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        if path == ROOT / "sgflow" / "errors.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _views(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skip
            ):
                found.setdefault(node.value, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_code_is_raised_somewhere() -> None:
    strings = _strings()
    unused = sorted(code for code in CODES if code not in strings)
    assert not unused, f"registered but never used in sgflow: {unused}"


def test_every_code_given_to_an_error_is_registered() -> None:
    unregistered: list[str] = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            args = list(node.args[:2]) if name in _RAISERS else []
            args += [k.value for k in node.keywords if k.arg == "code"]
            for arg in args:
                if (
                    isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and _CODE.match(arg.value)
                    and arg.value not in CODES
                ):
                    unregistered.append(f"{path.relative_to(ROOT)}:{node.lineno} {arg.value}")
        for node in ast.walk(tree):  # class attributes `code = "..."`
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if (
                        isinstance(stmt, ast.Assign | ast.AnnAssign)
                        and any(
                            isinstance(t, ast.Name) and t.id == "code"
                            for t in (
                                stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                            )
                        )
                        and isinstance(stmt.value, ast.Constant)
                        and stmt.value.value not in CODES
                    ):
                        unregistered.append(f"{path.relative_to(ROOT)}:{stmt.lineno}")
    assert not unregistered, unregistered


def test_the_readme_documents_every_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert codes_table() in readme, "README's error-code table differs from codes_table()"


def test_an_unregistered_code_is_refused() -> None:
    with pytest.raises(KeyError, match=r"'grammar\.timeout' is not registered"):
        SgflowError("grammar.timeout", "late")


@pytest.mark.parametrize(
    "error",
    [
        GrammarError("grammar.compile_timeout", "/x", "late", limit=5),
        ProgramError("program.syntax", "", "bad YAML", "fix it", "p.yaml", 3),
        RunError("output.invalid", "no", step="s1"),
        LeaseLost("r1", 2),
        InvalidCursor("abc"),
        MaxAttemptsExceeded("r1", 3),
        ConstraintError("cannot compile", field="sampling_params.regex"),
        Overloaded("queue full"),
        ApiError(429, "limit.concurrent_runs", "too many", limit=16),
        ClientApiError(404, "run.not_found", "no run"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_error_class_is_one_type_with_one_shape(error: SgflowError) -> None:
    assert isinstance(error, SgflowError)
    body = error.to_dict()
    assert {"code", "message", "field", "limit", "hint", "retryable"} <= set(body)
    assert body["code"] in CODES
    assert error.status == CODES[error.code].status
    assert error.retryable == CODES[error.code].retryable
    assert (
        body["field"] is None
        or body["field"] == ""
        or body["field"].startswith(("/", "query:", "header:", "path:"))
    )


def test_the_engine_answers_the_checkers_codes_as_pointers() -> None:
    err = ConstraintError(
        "late", field="sampling_params.json_schema", code="grammar.compile_timeout"
    )
    assert err.to_body()["error"]["field"] == "/sampling_params/json_schema"
    assert err.status == 422 and BadRequest("x").status == 422
    assert isinstance(err, EngineError)


def test_a_stored_run_error_is_rebuilt_with_its_status() -> None:
    stored = RunError("run.deadline_exceeded", "late", step="s1").to_dict()
    rebuilt = SgflowError.from_dict(stored, run="r1")
    assert (rebuilt.code, rebuilt.status, rebuilt.extra["run"], rebuilt.extra["step"]) == (
        "run.deadline_exceeded",
        504,
        "r1",
        "s1",
    )
    unknown = SgflowError.from_dict({"code": "something.new", "message": "?"})
    assert unknown.code == "run.failed" and unknown.extra["original_code"] == "something.new"


def test_store_errors_take_their_class_code() -> None:
    assert StoreError("x").code == "run.store"


@pytest.mark.parametrize(
    ("given", "pointer"),
    [
        ("sampling_params.regex", "/sampling_params/regex"),
        ("/inputs/a~1b", "/inputs/a~1b"),
        ("", ""),
        ("text", "/text"),
        ("query:cursor", "query:cursor"),
        ("header:Idempotency-Key", "header:Idempotency-Key"),
    ],
)
def test_locations_are_json_pointers(given: str, pointer: str) -> None:
    assert as_pointer(given) == pointer
