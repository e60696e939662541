"""The peer cache, start-up polling and the ``sgflow peers`` CLI, without building anything."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sgflow.cli import main
from sgflow.peers import llamacpp_server
from sgflow.peers.cache import PeerStartFailed, cache_root, free_port, wait_healthy


@pytest.fixture
def peers_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SGFLOW_PEERS_CACHE", str(tmp_path / "peers"))
    return tmp_path / "peers"


def _place_binary(root: Path) -> Path:
    """An executable where an installed llama-server would be (it is never run)."""
    exe = root / f"llama-server-{llamacpp_server.LLAMA_VERSION}-avx2" / "llama-server"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


def test_cache_root_follows_the_environment(
    peers_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cache_root() == peers_cache
    monkeypatch.delenv("SGFLOW_PEERS_CACHE")
    assert cache_root() == Path.home() / ".cache" / "sgflow" / "peers"


def test_binary_is_none_until_installed(peers_cache: Path) -> None:
    assert llamacpp_server.binary() is None
    assert llamacpp_server.binary() is None  # a missing cache is not created by asking
    assert not peers_cache.exists()
    exe = _place_binary(peers_cache)
    assert llamacpp_server.binary() == exe


def test_install_returns_at_once_when_present(peers_cache: Path) -> None:
    exe = _place_binary(peers_cache)
    lines: list[str] = []
    assert llamacpp_server.install(log=lines.append) == exe
    assert lines == [f"llama-server {llamacpp_server.LLAMA_VERSION}: installed at {exe}"]
    assert sorted(p.name for p in peers_cache.iterdir()) == [exe.parent.name]  # no build dir


def test_starting_without_the_binary_says_how_to_install(peers_cache: Path) -> None:
    with pytest.raises(FileNotFoundError, match="sgflow peers install llamacpp"):
        llamacpp_server.LlamaServer(model_path="unused.gguf").start()


def test_wait_healthy_fails_fast_with_the_log_when_the_process_exits(tmp_path: Path) -> None:
    log = tmp_path / "peer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "print('model file is corrupt'); raise SystemExit(3)"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started = time.monotonic()
    with pytest.raises(PeerStartFailed, match=r"exited with 3(.|\n)*model file is corrupt"):
        wait_healthy(f"http://127.0.0.1:{free_port()}", "/health", 60, proc, log_path=log)
    assert time.monotonic() - started < 30  # the exit is noticed, not the 60 s timeout


def test_wait_healthy_times_out_while_the_process_runs(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(PeerStartFailed, match=r"not healthy after 0.5s"):
            wait_healthy(f"http://127.0.0.1:{free_port()}", "/health", 0.5, proc)
        assert proc.poll() is None  # the caller owns the process
    finally:
        proc.kill()
        proc.wait()


def test_status_json_reports_what_is_installed(
    peers_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["peers", "status", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["cache_root"] == str(peers_cache)
    assert before["peers"]["llamacpp"]["installed"] is False
    exe = _place_binary(peers_cache)
    assert main(["peers", "status", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)["peers"]["llamacpp"]
    assert after == {
        "available": True,
        "installed": True,
        "version": llamacpp_server.LLAMA_VERSION,
        "path": str(exe),
    }


def test_install_llamacpp_is_idempotent_from_the_cli(
    peers_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exe = _place_binary(peers_cache)
    assert main(["peers", "install", "llamacpp"]) == 0
    assert f"installed at {exe}" in capsys.readouterr().out
