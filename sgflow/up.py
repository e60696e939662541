"""``sgflow up``: the whole service on one machine.

An embedded Valkey (AOF on, in ``--data-dir``) unless ``REDIS_URL`` is set, the embedded
engine unless ``--engine URL`` names an SGLang server (``--replicas N`` engines, or several
``--engine`` URLs, get sglang-router in front, cache-aware by default), one Celery worker,
and the API on ``127.0.0.1:8000``. Prints the URL, a development API key and a curl example;
Ctrl-C (or SIGTERM) stops everything in reverse order.

It reads the same settings as every sgflow process (``sgflow config`` shows them):
``REDIS_URL``, ``SGFLOW_PREFIX``, and ``SGFLOW_ENGINE_URLS`` as the default of ``--engine``; it
refuses to start on a configuration its children would refuse. Once up, it supervises its
children (:mod:`sgflow.supervisor`): a crashed engine, router, worker or API is restarted with
capped exponential backoff, each restart logged as a JSON line on stderr, and it gives up,
stopping everything with a message, only after repeated fast crashes of one child.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sgflow.cluster import POLICIES, Cluster, ClusterConfig
from sgflow.config_cli import load_settings, origins
from sgflow.supervisor import RestartPolicy, supervise

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
        "several servers (sglang-router is started in front of them); default: "
        "$SGFLOW_ENGINE_URLS if set, else the embedded engine",
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
    p.add_argument(
        "--restart-max-s",
        type=float,
        default=30.0,
        help="longest wait before restarting a crashed child (default 30; the first wait is 1)",
    )


def run(args: argparse.Namespace) -> int:
    from sgflow.logs import setup_logging

    setup_logging("info")
    if args.replicas < 1:
        print("--replicas must be at least 1", file=sys.stderr)
        return 2
    if args.restart_max_s < 1:
        print("--restart-max-s must be at least 1", file=sys.stderr)
        return 2
    settings = load_settings("up", **({"engine_urls": args.engine} if args.engine else {}))
    if settings is None:
        return 2
    external = bool(args.engine) or origins()["engine_urls"].kind != "default"
    config = ClusterConfig(
        replicas=args.replicas,
        policy=args.policy,
        engine_urls=list(settings.engine_urls) if external else [],
        engine_port=args.engine_port,
        router_port=args.router_port,
        workers=args.workers,
        concurrency=args.concurrency,
        redis_url=settings.redis_url,
        prefix=settings.redis_prefix,
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir),
    )
    cluster = Cluster(config)
    if not config.engine_urls:
        engines = "engine" if args.replicas == 1 else f"{args.replicas} engines"
        print(f"starting {engines} (SmolLM2-135M-Instruct), a worker and the API…", flush=True)
    policy = RestartPolicy(cap_s=args.restart_max_s)
    try:
        with cluster:
            _banner(cluster)
            reason = _supervise(cluster, policy)
    except RuntimeError as exc:
        print(f"sgflow up failed: {exc}", file=sys.stderr)
        return 1
    if reason is not None:
        print(f"sgflow up: {reason}; stopped everything", file=sys.stderr)
        return 1
    return 0


def _banner(cluster: Cluster) -> None:
    api = cluster.api_url
    key = cluster.create_key("dev", name="sgflow up")
    store = "embedded Valkey (AOF, data in " + str(cluster.data_dir / "valkey") + ")"
    lines = [
        f"\nsgflow is up: {api}  (docs: {api}/docs, playground: {api}/playground)",
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


def _supervise(cluster: Cluster, policy: RestartPolicy) -> str | None:
    """Restart crashed children until Ctrl-C / SIGTERM (returns None) or a child crashes
    too often (returns why)."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    try:
        reason = supervise(cluster, stop, policy=policy)
    except KeyboardInterrupt:
        reason = None
    if reason is None:
        print("\nstopping…", file=sys.stderr)
    return reason
