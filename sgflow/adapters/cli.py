"""``sgflow engines probe URL`` and ``sgflow engines list``: what an engine is and can do."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sgflow.adapters import ADAPTERS
from sgflow.adapters.base import FEATURES, Capabilities

__all__ = ["add_parser", "capability_rows", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("engines", help="which engine a URL is, and what each engine enforces")
    verbs = p.add_subparsers(dest="engines_command", required=True)
    probe = verbs.add_parser("probe", help="detect the engine at URL and print its capabilities")
    probe.add_argument("url", help="http://host:port, or KIND+http://host:port")
    probe.add_argument("--json", action="store_true", help="machine-readable output")
    listed = verbs.add_parser("list", help="the capability table of every engine kind")
    listed.add_argument("--json", action="store_true", help="machine-readable output")


def capability_rows(caps: Capabilities) -> list[tuple[str, str, str]]:
    """``(feature, support, how)`` for the table, features first, then the rest."""
    rows: list[tuple[str, str, str]] = [
        (f, caps.enforcement(f).support, caps.enforcement(f).how) for f in FEATURES
    ]
    rows += [
        ("structural_tag", "native" if caps.structural_tag else "none", ""),
        ("prefix cache", "", caps.prefix_cache),
        ("cached tokens", "reported" if caps.cached_tokens else "not reported", caps.cached_tokens or ""),
        ("streaming / n / stop / seed", "", " / ".join(
            "yes" if x else "no" for x in (caps.streaming, caps.n, caps.stop, caps.seed)
        )),
    ]  # fmt: skip
    return rows


def _print(caps: Capabilities) -> None:
    print(f"{caps.name} ({caps.kind}), facts read at {caps.version}: {caps.source}")
    for feature, support, how in capability_rows(caps):
        print(f"  {feature:28} {support:13} {how}")
    for note in caps.notes:
        print(f"  note: {note}")


def run(args: argparse.Namespace) -> int:
    if args.engines_command == "list":
        if args.json:
            print(json.dumps([a.capabilities.to_dict() for a in ADAPTERS.values()], indent=2))
        else:
            for adapter in ADAPTERS.values():
                _print(adapter.capabilities)
        return 0
    from sgflow.adapters.detect import EngineUnrecognised, detect

    try:
        probe = detect(args.url)
    except (EngineUnrecognised, ValueError) as exc:
        print(f"sgflow engines probe: {exc}", file=sys.stderr)
        return 1
    caps = ADAPTERS[probe.kind].capabilities
    if args.json:
        body = {
            "kind": probe.kind,
            "url": probe.url,
            "model": probe.model,
            "version": probe.version,
            "capabilities": caps.to_dict(),
        }
        print(json.dumps(body, indent=2))
        return 0
    version = f" {probe.version}" if probe.version else ""
    print(f"{probe.url}: {probe.kind}{version}, model {probe.model}")
    _print(caps)
    return 0
