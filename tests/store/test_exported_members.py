"""The public surface of ``sgflow.store`` is pinned: changing it is a decision. The API and
the workers use the store through these names only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import sgflow.store

SGFLOW = Path(sgflow.store.__file__).parents[1]

MODULES = [
    "aio",
    "apikeys",
    "batches",
    "config",
    "errors",
    "events",
    "files",
    "idempotency",
    "listing",
    "lua",
    "ops",
    "presence",
    "programs",
    "reaper",
    "records",
    "runs",
    "stats",
    "sync",
]


def test_package_surface() -> None:
    assert set(sgflow.store.__all__) == {
        "CODES",
        "FINAL_STATUSES",
        "STALE_VALIDATING_S",
        "STATUSES",
        "TENANT_PATTERN",
        "ActiveRunLimit",
        "ApiKey",
        "AsyncBatchStore",
        "AsyncFileStore",
        "AsyncKeyStore",
        "AsyncProgramBodies",
        "AsyncProgramStore",
        "AsyncRunStore",
        "BatchProgress",
        "BatchRecord",
        "BatchStore",
        "Claim",
        "Event",
        "IdempotencyConflict",
        "InvalidCursor",
        "KeyStore",
        "LeaseLost",
        "MaxAttemptsExceeded",
        "MetricsSnapshot",
        "OpenAIBatchFacts",
        "ProgramBodies",
        "ProgramInfo",
        "ProgramStore",
        "Run",
        "RunAlreadyFinished",
        "RunNotFound",
        "RunStore",
        "Stats",
        "StoreConfig",
        "StoreError",
        "TimeLimitExceeded",
        "StoredFile",
        "StoredProgram",
        "Submitted",
        "batch_status",
        "check_event_id",
        "content_hash",
        "deadline_error",
    }
    for name in sgflow.store.__all__:
        assert getattr(sgflow.store, name) is not None, name


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_its_surface(name: str) -> None:
    module = importlib.import_module(f"sgflow.store.{name}")
    assert module.__all__, name
    for member in module.__all__:
        assert hasattr(module, member), f"{name}.{member}"


def test_every_error_code_is_documented() -> None:
    errors = [
        getattr(sgflow.store, name)
        for name in sgflow.store.__all__
        if isinstance(getattr(sgflow.store, name), type)
        and issubclass(getattr(sgflow.store, name), sgflow.store.StoreError)
        and name != "StoreError"
    ]
    assert {e.code for e in errors} == set(sgflow.store.CODES)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", ["service", "workers"])
def test_the_api_and_the_workers_use_only_the_public_names(package: str) -> None:
    for path in sorted((SGFLOW / package).rglob("*.py")):
        private = {m for m in _imports(path) if m.startswith("sgflow.store.")}
        assert not private, f"{path.relative_to(SGFLOW)} imports {sorted(private)}"
