"""``sgflow peers``: build, inspect and run the peer engines that tests and benches start.

- ``sgflow peers install [llamacpp|vllm|all]``  build/install into the per-machine cache
  (default ``all``; idempotent, so ``make test`` can run it every time)
- ``sgflow peers status [--json]``              what is installed where
- ``sgflow peers serve llamacpp [--port P]``    run ``llama-server`` in the foreground, print
  its URL, stop on Ctrl-C

Wired into the top-level parser by ``sgflow.cli`` with :func:`add_parser` and :func:`run`;
``python -m sgflow.peers.vllm_cpu serve`` runs the vLLM server in the foreground.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from types import FrameType
from typing import Any

from sgflow.peers import llamacpp_server, vllm_cpu
from sgflow.peers.cache import PeerStartFailed, cache_root

__all__ = ["add_parser", "run"]

PEERS = ("llamacpp", "vllm")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``peers`` and its subcommands to ``subparsers`` (from ``add_subparsers()``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "peers", help="install, list and run peer engines (llama.cpp's llama-server, vLLM)"
    )
    sub = parser.add_subparsers(dest="peers_command", required=True)
    p_install = sub.add_parser("install", help="build/install peers into the per-machine cache")
    p_install.add_argument("peer", nargs="?", choices=[*PEERS, "all"], default="all")
    p_status = sub.add_parser("status", help="what is installed where")
    p_status.add_argument("--json", action="store_true", help="print JSON instead of text")
    p_serve = sub.add_parser("serve", help="run a peer in the foreground until Ctrl-C")
    p_serve.add_argument("peer", choices=["llamacpp"])
    p_serve.add_argument("--port", type=int, default=None, help="default: a free port")
    p_serve.add_argument("--model", default=None, help="a GGUF path (default: bundled SmolLM2)")
    p_serve.add_argument("--ctx", type=int, default=4096, help="KV context, all slots (4096)")
    p_serve.add_argument("--slots", type=int, default=2, help="parallel sequences (2)")
    p_serve.add_argument("--threads", type=int, default=2, help="CPU threads (2)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the subcommand in ``args``; returns the exit status."""
    if args.peers_command == "install":
        return _install(args.peer)
    if args.peers_command == "status":
        return _status(args.json)
    return _serve(args)


def _log(line: str) -> None:
    print(line, flush=True)


def _install(peer: str) -> int:
    if peer in ("llamacpp", "all"):
        try:
            llamacpp_server.install(log=_log)
        except llamacpp_server.BuildFailed as e:
            print(f"sgflow peers install: llama-server: {e}", file=sys.stderr)
            return 1
    if peer in ("vllm", "all"):
        vllm_cpu.install(log=_log)
    return 0


def _status(as_json: bool) -> int:
    exe = llamacpp_server.binary()
    peers: dict[str, dict[str, Any]] = {
        "llamacpp": {
            "available": True,
            "installed": exe is not None,
            "version": llamacpp_server.LLAMA_VERSION,
            "path": str(exe or llamacpp_server.install_dir() / "llama-server"),
        },
        "vllm": {
            "available": True,
            "installed": vllm_cpu.installed(),
            "version": vllm_cpu.VLLM_VERSION,
            "path": str(vllm_cpu.venv_dir()),
        },
    }
    if as_json:
        print(json.dumps({"cache_root": str(cache_root()), "peers": peers}, indent=2))
        return 0
    print(f"cache: {cache_root()}")
    for name, info in peers.items():
        if not info["available"]:
            state = "not in this checkout"
        else:
            state = "installed" if info["installed"] else "not installed"
        where = f"  {info['path']}" if "path" in info else ""
        print(f"{name:<10} {state}{where}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    server = llamacpp_server.LlamaServer(
        args.model, args.port, ctx=args.ctx, slots=args.slots, threads=args.threads
    )
    try:
        server.start()
    except (FileNotFoundError, PeerStartFailed) as e:
        print(f"sgflow peers serve: {e}", file=sys.stderr)
        return 1
    print(f"llama-server {llamacpp_server.LLAMA_VERSION} serving {server.url}", flush=True)
    print(f"log: {server.log_path}; Ctrl-C stops it", flush=True)
    # SIGTERM too, and SIGINT even where a shell started us with it ignored: the server must
    # never outlive this command.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    try:
        code = server.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        server.stop()
    if code:
        print(f"llama-server exited with {code}:\n{server.log_tail()}", file=sys.stderr)
    return code


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
