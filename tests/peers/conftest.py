"""The live ``llama-server`` peer (built by ``make peers``), one per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from sgflow.peers.llamacpp_server import LlamaServer, binary, install_dir


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """``llama-server`` on the bundled SmolLM2, 2 slots, 2 threads.

    Skipped when the binary is not built, except under ``CI``, where that is a failure.
    """
    if binary() is None:
        reason = f"llama-server is not installed under {install_dir()}: run `make peers`"
        if _in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    with LlamaServer() as server:
        yield server


@pytest.fixture(scope="session")
def llama(llama_server: LlamaServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=llama_server.url, timeout=120) as c:
        yield c
