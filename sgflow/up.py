"""``sgflow up``: the whole service on one machine.

An embedded Valkey (AOF on, in ``--data-dir``) unless ``REDIS_URL`` is set, the embedded
engine unless ``--engine URL`` names an SGLang server (``--replicas N`` engines, or several
``--engine`` URLs, get sglang-router in front, cache-aware by default), one Celery worker,
and the API on ``127.0.0.1:8000``. Prints the URL, a development API key and a curl example; Ctrl-C stops
everything in reverse order.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sgflow.cluster import POLICIES, Cluster, ClusterConfig

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("up", help="everything on one machine: Redis, engine(s), worker, API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    p.add_argument(
        "--engine",
        action="append",
        metavar="URL",
        help="an SGLang server or router URL instead of the embedded engine; repeat it for "
        "several servers (sglang-router is started in front of them)",
    )
    p.add_argument("--engine-port", type=int, default=30000, help="first engine port")
    p.add_argument(
        "--replicas", type=int, default=1, help="embedded engines behind sglang-router (default 1)"
    )
    p.add_argument(
        "--policy",
        choices=POLICIES,
        default="cache_aware",
        help="sglang-router policy when there are several engines (default cache_aware)",
    )
    p.add_argument("--router-port", type=int, default=30100, help="router port (default 30100)")
    p.add_argument("--workers", type=int, default=1, help="Celery worker processes (default 1)")
    p.add_argument("--concurrency", type=int, default=2, help="runs per worker (default 2)")
    p.add_argument("--data-dir", default=".sgflow", help="embedded Redis data (default ./.sgflow)")


def run(args: argparse.Namespace) -> int:
    if args.replicas < 1:
        print("--replicas must be at least 1", file=sys.stderr)
        return 2
    config = ClusterConfig(
        replicas=args.replicas,
        policy=args.policy,
        engine_urls=list(args.engine or []),
        engine_port=args.engine_port,
        router_port=args.router_port,
        workers=args.workers,
        concurrency=args.concurrency,
        redis_url=os.environ.get("REDIS_URL") or None,
        prefix=os.environ.get("SGFLOW_PREFIX", "sgflow:"),
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir),
    )
    cluster = Cluster(config)
    if not config.engine_urls:
        engines = "engine" if args.replicas == 1 else f"{args.replicas} engines"
        print(f"starting {engines} (SmolLM2-135M-Instruct), a worker and the API…", flush=True)
    try:
        with cluster:
            _banner(cluster)
            _wait_forever(cluster)
    except RuntimeError as exc:
        print(f"sgflow up failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _banner(cluster: Cluster) -> None:
    api = cluster.api_url
    key = cluster.create_key("dev", name="sgflow up")
    store = "embedded Valkey (AOF, data in " + str(cluster.data_dir / "valkey") + ")"
    lines = [
        f"\nsgflow is up: {api}  (docs: {api}/docs)",
        f"  store: {cluster.redis_url if cluster.config.redis_url else store}",
        f"  engines: {', '.join(cluster.engine_urls)}",
    ]
    if cluster.router_url:
        lines.append(f"  sglang-router ({cluster.config.policy}): {cluster.router_url}")
    lines += [
        f"  development API key (tenant 'dev'): {key}\n",
        f"  curl -s {api}/v1/extract -H 'Authorization: Bearer {key}' \\",
        '    -H \'Content-Type: application/json\' -d \'{"schema": {"type": "object", '
        '"properties": {"city": {"type": "string", "maxLength": 40}}, '
        '"required": ["city"]}, "text": "The Eiffel tower is in Paris."}\'\n',
        "  stop: Ctrl-C",
    ]
    print("\n".join(lines), flush=True)


def _wait_forever(cluster: Cluster) -> None:
    stop = {"now": False}

    def handler(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, handler)
    try:
        while not stop["now"]:
            name = cluster.exited()
            if name is not None:
                print(
                    f"{name} exited (log: {cluster.data_dir / name}.log); stopping", file=sys.stderr
                )
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping…", file=sys.stderr)
