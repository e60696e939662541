"""``sgflow config``: the effective configuration of this environment, and where each value
came from.

Every :class:`~sgflow.settings.Settings` field is printed with its canonical variable, its value
(secrets masked: an API key as ``**********``, a password in a URL as ``***``) and its origin:
``default``, ``env NAME``, ``deprecated env NAME`` or ``CLI flag --set`` (``--set FIELD=VALUE``
previews a value without exporting it). Then the warnings: deprecated variables, ``SGFLOW_*``
variables that no setting reads (typos), and allowed but unwise combinations
(:meth:`Settings.warnings`). With an invalid configuration the errors are printed, each naming
its variable, and the exit code is 2 (what ``sgflow serve`` / ``worker`` / ``up`` would refuse).
``--json`` prints ``{"settings": [...], "warnings": [...], "errors": [...]}``.

The same helpers let the other commands refuse a bad configuration with one clear message:
:func:`load_settings`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr, ValidationError

from sgflow.settings import DEPRECATED, Settings, env_name, env_names, mask

__all__ = ["Origin", "add_parser", "error_lines", "load_settings", "origins", "report", "run"]

# SGFLOW_* variables that are not settings: compose's router service, the bench and the tests
OTHER_VARIABLES = frozenset(
    {
        "SGFLOW_ROUTER_POLICY",
        "SGFLOW_ROUTER_WORKER_URLS",
        "SGFLOW_BENCH_REDIS_URL",
        "SGFLOW_JSONSCHEMABENCH",
        "SGFLOW_TEST_REDIS_URL",
    }
)


@dataclass(frozen=True)
class Origin:
    """Where a setting's value came from: ``kind`` is ``default``, ``env``,
    ``deprecated_env`` or ``cli``; ``name`` the variable or flag."""

    kind: str
    name: str | None = None

    def __str__(self) -> str:
        if self.kind == "default":
            return "default"
        label = {"env": "env", "deprecated_env": "deprecated env", "cli": "CLI flag"}[self.kind]
        return f"{label} {self.name}"


def origins(
    env: Mapping[str, str] | None = None, flags: Mapping[str, str] | None = None
) -> dict[str, Origin]:
    """Each field's :class:`Origin`, by the rules :class:`Settings` applies: a CLI flag
    (``flags``: field -> the flag's name) beats the canonical variable, which beats a
    deprecated one, which beats the default. ``env`` default ``os.environ``."""
    present = {key.upper() for key in (os.environ if env is None else env)}
    flags = flags or {}
    out: dict[str, Origin] = {}
    for field, variable in env_names().items():
        old = [name for name, target in DEPRECATED.items() if target == field and name in present]
        if field in flags:
            out[field] = Origin("cli", flags[field])
        elif variable in present:
            out[field] = Origin("env", variable)
        elif old:
            out[field] = Origin("deprecated_env", old[0])
        else:
            out[field] = Origin("default")
    return out


def environment_warnings(env: Mapping[str, str] | None = None) -> list[str]:
    """Deprecated variables in use (or ignored), and ``SGFLOW_*`` variables nothing reads."""
    present = {key.upper() for key in (os.environ if env is None else env)}
    out = []
    for old, field in DEPRECATED.items():
        if old not in present:
            continue
        new = env_name(field)
        if new in present:
            out.append(f"{old} is deprecated and ignored: {new} is set; unset {old}")
        else:
            out.append(f"{old} is deprecated: set {new} instead")
    known = set(env_names().values()) | set(DEPRECATED) | OTHER_VARIABLES
    for name in sorted(present):
        if name.startswith("SGFLOW_") and name not in known:
            out.append(f"{name} is not a setting sgflow reads (a typo?); see `sgflow config`")
    return out


def error_lines(exc: ValidationError, origin: Mapping[str, Origin] | None = None) -> list[str]:
    """One line per error of ``exc``, naming the setting and the variable it came from."""
    origin = origins() if origin is None else origin
    by_alias = {variable: field for field, variable in env_names().items()}
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        message = str(error["msg"]).removeprefix("Value error, ")
        if not loc:
            lines.append(message)
            continue
        field = by_alias.get(loc[0], loc[0])
        where = origin.get(field)
        source = f" (from {where})" if where is not None and where.kind != "default" else ""
        lines.append(f"{field}{source}: {message}")
    return lines


def load_settings(command: str, **overrides: Any) -> Settings | None:
    """``Settings(**overrides)``, or ``None`` after printing why the configuration is
    refused (to stderr, one line per error, each naming its variable)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        flags = {field: "--set" for field in overrides}
        print(f"sgflow {command}: the configuration is invalid:", file=sys.stderr)
        for line in error_lines(exc, origins(flags=flags)):
            print(f"  {line}", file=sys.stderr)
        print("  (see `sgflow config` for every setting and where it comes from)", file=sys.stderr)
        return None


def report(given: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The configuration of this environment as data: ``settings`` (one entry per field:
    ``name``, ``variable``, ``deprecated_variables``, ``value``, ``origin``,
    ``description``), ``warnings`` and ``errors`` (empty when it is valid)."""
    overrides: dict[str, Any] = dict(given or {})
    origin = origins(flags={field: "--set" for field in overrides})
    errors: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        errors = error_lines(exc, origin)
    warnings = environment_warnings()
    if settings is not None:
        warnings += settings.warnings()
    rows = []
    for field, info in Settings.model_fields.items():
        if settings is not None:
            value = getattr(settings, field)
        else:  # show what was given, unvalidated
            value = _raw_value(field, origin[field], overrides)
        rows.append(
            {
                "name": field,
                "variable": env_name(field),
                "deprecated_variables": [n for n, f in DEPRECATED.items() if f == field],
                "value": _printable(mask(value)),
                "origin": str(origin[field]),
                "description": info.description or "",
            }
        )
    return {"settings": rows, "warnings": warnings, "errors": errors}


def _raw_value(field: str, origin: Origin, overrides: Mapping[str, str]) -> Any:
    if origin.kind == "cli":
        return overrides[field]
    if origin.kind in ("env", "deprecated_env"):
        upper = {key.upper(): value for key, value in os.environ.items()}
        return upper.get(str(origin.name))
    info = Settings.model_fields[field]
    return info.get_default(call_default_factory=True)


def _printable(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return str(mask(value))
    return value


# -- the command ---------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "config",
        help="print the effective configuration: every setting, its value and origin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="preview a value as a command-line override (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the report; exit 0 when the configuration is valid, 2 when it is not."""
    # the report lists the deprecations itself; the settings' own log lines would repeat them
    logging.getLogger("sgflow.settings").setLevel(logging.ERROR)
    overrides: dict[str, str] = {}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or field not in Settings.model_fields:
            print(f"sgflow config: --set {item!r}: expected FIELD=VALUE with a known FIELD")
            return 2
        overrides[field] = value
    data = report(overrides)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(_table(data))
    return 2 if data["errors"] else 0


def _table(data: dict[str, Any]) -> str:
    head = ("setting", "variable", "value", "from")
    rows = [(r["name"], r["variable"], _text(r["value"]), r["origin"]) for r in data["settings"]]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(3)]
    lines = [
        f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in [head, *rows]
    ]
    for title, items in (("warnings", data["warnings"]), ("errors", data["errors"])):
        if items:
            lines.append(f"\n{title}:")
            lines += [f"  - {item}" for item in items]
    return "\n".join(lines)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
