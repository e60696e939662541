"""``sgflow keys``: create, list and revoke API keys.

Redis is ``--redis-url``, else ``REDIS_URL``, else ``redis://127.0.0.1:6379/0``; keys go
under ``SGFLOW_PREFIX`` (default ``sgflow:``), the same settings the API reads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import redis

from sgflow.config_cli import load_settings
from sgflow.store import ApiKey, KeyStore

__all__ = ["DEFAULT_REDIS_URL", "add_parser", "run"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``keys`` and its subcommands to the ``sgflow`` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url",
        default=None,
        help=f"Redis (default: $REDIS_URL, else {DEFAULT_REDIS_URL})",
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "keys", help="create, list and revoke API keys (stored hashed in Redis)"
    )
    sub = parser.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", parents=[common], help="create a key; prints it once")
    create.add_argument("--tenant", required=True, help="tenant the key acts for")
    create.add_argument("--name", default=None, help="a label for people (default none)")
    listing = sub.add_parser("list", parents=[common], help="a tenant's keys (no secrets)")
    listing.add_argument("--tenant", required=True)
    revoke = sub.add_parser("revoke", parents=[common], help="revoke a key at once")
    revoke.add_argument("key_id", help="the id printed by `keys create` / `keys list`")
    return parser


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch)) if epoch else "-"


def _print_keys(keys: list[ApiKey]) -> None:
    print(f"{'id':<16}  {'name':<20}  {'created':<20}  revoked")
    for key in keys:
        print(
            f"{key.id:<16}  {key.name or '-':<20}  {_when(key.created_at):<20}  {_when(key.revoked_at)}"
        )


def run(args: argparse.Namespace) -> int:
    """Run ``sgflow keys …``. Returns 0 on success, 1 when Redis fails or the key is
    unknown, 2 for bad settings or a bad tenant name."""
    settings = load_settings("keys")
    if settings is None:
        return 2
    url = args.redis_url or settings.redis_url or DEFAULT_REDIS_URL
    client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
    store = KeyStore(client, prefix=settings.redis_prefix)
    try:
        return _run(store, args)
    except redis.RedisError as exc:
        print(f"sgflow keys: Redis at {url}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _run(store: KeyStore, args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        try:
            key_id, secret = store.create_key(args.tenant, name=args.name)
        except ValueError as exc:
            print(f"sgflow keys: {exc}", file=sys.stderr)
            return 2
        if args.json:
            out = {"id": key_id, "tenant": args.tenant, "name": args.name, "secret": secret}
            print(json.dumps(out))
        else:
            print(f"created key {key_id} for tenant {args.tenant}; the secret is shown once:")
            print(secret)
        return 0
    if args.keys_command == "list":
        keys = store.list_keys(args.tenant)
        if args.json:
            print(json.dumps([k.to_dict() for k in keys]))
        else:
            _print_keys(keys)
        return 0
    revoked = store.revoke_key(args.key_id)
    if revoked is None:
        print(f"sgflow keys: there is no key {args.key_id}", file=sys.stderr)
        return 1
    print(
        json.dumps(revoked.to_dict())
        if args.json
        else f"revoked key {revoked.id} ({revoked.tenant})"
    )
    return 0
