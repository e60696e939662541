"""Safety limits on constraints, as data.

Like xgrammar's ``config.py``: one process-wide value with a getter, a setter, a context
manager for tests and an environment variable per field (read by the settings, below). The
defaults:

=====================  ========  ==========================================================
field                  default   what it bounds
=====================  ========  ==========================================================
max_schema_depth       32        nesting of subschemas (plus nesting inside enum/const);
                                 raw JSON nesting anywhere is capped at 4 times this
max_schema_bytes       100_000   the JSON Schema, serialised compactly as UTF-8
max_enum_size          1000      options of one ``enum`` or of a choices list
max_schema_branches    256       subschemas of one ``anyOf``/``oneOf``/``allOf``
max_regex_chars        4096      a regex constraint, or one ``pattern`` in a schema
max_regex_memory       1 MiB     memory RE2 may use for one compiled pattern (program
                                 and DFA cache), :mod:`~sgflow.grammars.safe_regex`
max_ebnf_chars         50_000    an EBNF grammar
compile_timeout_s      10.0      wall time of one xgrammar compilation (a check; the engine allows 30 s)
max_json_whitespace    4         longest whitespace run per gap in ``free`` JSON layout
json_layout            indent    whitespace of constrained JSON: ``indent`` (fixed, as
                                 ``json.dumps(indent=2)``), ``compact`` or ``free``
                                 (:mod:`~sgflow.grammars.layout`)
allow_recursive_refs   True      ``$ref`` loops through objects/arrays (trees); loops that
                                 never produce JSON are refused regardless
=====================  ========  ==========================================================

``grammars/`` is pure: it does not read the environment. A service process gets its limits from
:class:`sgflow.settings.Settings` (variables ``SGFLOW_<NAME>``, e.g. ``SGFLOW_MAX_SCHEMA_DEPTH=64``),
which :func:`sgflow.settings.apply` installs with :func:`set_limits` at start-up. A library user
who wants the same variables calls ``set_limits(**vars(Limits.from_env(os.environ)))``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sgflow.grammars.layout import JsonLayout, LayoutName

__all__ = ["Limits", "get_limits", "limits", "set_limits"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class Limits:
    """The limits every check applies; see the module docstring for defaults."""

    max_schema_depth: int = 32
    max_schema_bytes: int = 100_000
    max_enum_size: int = 1000
    max_regex_chars: int = 4096
    max_ebnf_chars: int = 50_000
    compile_timeout_s: float = 10.0
    max_json_whitespace: int = 4
    allow_recursive_refs: bool = True
    max_regex_memory: int = 1 << 20
    max_schema_branches: int = 256
    json_layout: LayoutName = "indent"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool):
                continue
            if field.name == "json_layout":
                JsonLayout(value)  # raises ValueError naming the layouts
                continue
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"limit {field.name} must be a positive number, got {value!r}")

    @property
    def layout(self) -> JsonLayout:
        """The JSON layout these limits build grammars with."""
        return JsonLayout(self.json_layout, self.max_json_whitespace)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Limits:
        """Defaults overridden by the ``SGFLOW_<NAME>`` keys of ``environ`` (library use;
        services read :class:`sgflow.settings.Settings`); raises ``ValueError`` on a bad one."""
        env = environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            var = f"SGFLOW_{field.name.upper()}"
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            values[field.name] = _parse(var, raw.strip(), field.default)
        return cls(**values)


def _parse(var: str, raw: str, default: Any) -> Any:
    if isinstance(default, str):
        return raw
    if isinstance(default, bool):
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"{var}={raw!r} is not a boolean (use 1/0, true/false)")
    try:
        return type(default)(raw)
    except ValueError:
        kind = "an integer" if isinstance(default, int) else "a number"
        raise ValueError(f"{var}={raw!r} is not {kind}") from None


_lock = threading.Lock()
_current: Limits | None = None


def get_limits() -> Limits:
    """The limits in force: the defaults until :func:`set_limits` changes them."""
    global _current
    with _lock:
        if _current is None:
            _current = Limits()
        return _current


def set_limits(**changes: Any) -> Limits:
    """Replace some fields for the whole process; returns the new limits.

    Raises ``TypeError`` for an unknown field and ``ValueError`` for a non-positive value.
    """
    global _current
    new = dataclasses.replace(get_limits(), **changes)
    with _lock:
        _current = new
    return new


@contextmanager
def limits(**changes: Any) -> Iterator[Limits]:
    """Temporarily change some limits (process-wide, so meant for tests and scripts).

    >>> with limits(max_regex_chars=10):
    ...     ...  # checks refuse regexes over 10 characters here
    """
    global _current
    previous = get_limits()
    new = set_limits(**changes)
    try:
        yield new
    finally:
        with _lock:
            _current = previous
