"""Where peer engines are cached, and the two helpers every peer server uses to start."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

__all__ = ["PeerStartFailed", "cache_root", "free_port", "log_tail", "wait_healthy"]


class PeerStartFailed(RuntimeError):
    """A peer server exited, or did not answer its health check, while starting."""


def cache_root() -> Path:
    """The per-machine peer cache: ``$SGFLOW_PEERS_CACHE``, default ``~/.cache/sgflow/peers``."""
    return Path(os.environ.get("SGFLOW_PEERS_CACHE", "~/.cache/sgflow/peers")).expanduser()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, chars: int = 3000) -> str:
    """The last ``chars`` characters of a log file (empty if it does not exist)."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def wait_healthy(
    url: str,
    path: str,
    timeout_s: float,
    proc: subprocess.Popen[bytes],
    *,
    log_path: Path | None = None,
    interval_s: float = 0.1,
) -> None:
    """Poll ``GET url+path`` until it answers 200.

    Raises :class:`PeerStartFailed` at once if ``proc`` exits (with the tail of ``log_path``),
    or after ``timeout_s`` seconds without a 200 (the process is left running: the caller
    owns it and stops it).
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while True:
            code = proc.poll()
            if code is not None:
                tail = log_tail(log_path) if log_path else ""
                raise PeerStartFailed(f"{proc.args!r} exited with {code} while starting:\n{tail}")
            try:
                r = client.get(url + path)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() >= deadline:
                tail = log_tail(log_path) if log_path else ""
                raise PeerStartFailed(
                    f"{url}{path} not healthy after {timeout_s:g}s (last: {last}):\n{tail}"
                )
            time.sleep(interval_s)
