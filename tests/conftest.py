"""Fixtures that start real processes: the embedded engine with the real model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from sgflow.engine.launcher import EngineProcess

if TYPE_CHECKING:
    from tests.service.stack import Stack


@pytest.fixture(scope="session")
def engine() -> Iterator[EngineProcess]:
    proc = EngineProcess("--threads", "2")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def stack(engine: EngineProcess) -> Iterator[Stack]:
    """The API, a worker and two tenants on a key prefix of their own (tests/service/stack.py)."""
    from tests.service.stack import Stack

    s = Stack(engine.url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def engine_url(engine: EngineProcess) -> str:
    return engine.url


@pytest.fixture(scope="session")
def client(engine_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=engine_url, timeout=120) as c:
        yield c


def chat(user: str, system: str | None = None) -> str:
    """A ChatML prompt, the format SmolLM2-Instruct was trained on."""
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return f"{head}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
