"""The public surface of ``sgflow.service`` is pinned: changing it is a decision."""

from __future__ import annotations

import importlib

import pytest

import sgflow.service

MODULES = [
    "app",
    "auth",
    "batches",
    "deps",
    "errors",
    "events",
    "health",
    "keys_cli",
    "middleware",
    "models",
    "offload",
    "playground",
    "program_check",
    "routes",
    "routes.batches",
    "routes.openai",
    "routes.programs",
    "settings",
]


def test_package_surface() -> None:
    assert sorted(sgflow.service.__all__) == [
        "ApiError",
        "ApiKey",
        "KeyStore",
        "ProgramInfo",
        "ProgramStore",
        "Settings",
        "StoredProgram",
        "Tenant",
        "create_app",
    ]
    for name in sgflow.service.__all__:
        assert getattr(sgflow.service, name) is not None


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_its_surface(name: str) -> None:
    module = importlib.import_module(f"sgflow.service.{name}")
    assert module.__all__, name
    for member in module.__all__:
        assert hasattr(module, member), f"{name}.{member}"
