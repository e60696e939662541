"""The one error type of the grammar package, and its stable codes.

Every refusal is a :class:`GrammarError` (a :class:`sgflow.errors.SgflowError`) carrying a
``code`` from the one registry, :data:`sgflow.errors.CODES` (callers
branch on the code, never on the message), a ``pointer`` (RFC 6901 JSON pointer into the
constraint: ``""`` is the whole constraint, ``"/properties/age/minimum"`` a keyword of a
JSON Schema, ``"/3"`` an option of a choices list), a human ``message`` and a ``hint``
that says how to fix it. Codes by meaning:

- ``grammar.*``  the constraint itself is wrong or asks for something xgrammar cannot do
  - ``grammar.invalid_regex`` / ``invalid_ebnf`` / ``invalid_schema`` / ``invalid_choices``
                 does not parse, or is not valid against its meta-schema
  - ``grammar.unsupported``   valid, but xgrammar rejects it or would silently enforce
                 something else (lookaround, backreferences, non-local ``$ref`` …)
  - ``grammar.regex_dialect`` a schema pattern RE2 (which evaluates patterns in Python) would
                 read differently from xgrammar, or cannot compile (too large, over 1000
                 repetitions); the message names the construct and its position
  - ``grammar.ref_cycle``     ``$ref``s that loop without producing any JSON
  - ``grammar.unknown_name``  no library grammar has this name
  - ``grammar.compile_timeout`` compilation ran past ``Limits.compile_timeout_s``
- ``limit.*``    the constraint is over a size limit of :class:`~sgflow.grammars.limits.Limits`;
  ``limit`` holds the limit that was exceeded

The pointer is mutable on purpose: a caller that embeds the constraint in a larger
document (a program step) prefixes its own location before reporting.
"""

from __future__ import annotations

import re

from sgflow.errors import CODES as _REGISTRY
from sgflow.errors import SgflowError, escape_pointer

__all__ = ["CODES", "GrammarError", "clean_xgrammar_message", "escape_pointer"]

_NAMES = (
    "grammar.unsupported",
    "grammar.invalid_regex",
    "grammar.invalid_ebnf",
    "grammar.invalid_schema",
    "grammar.invalid_choices",
    "grammar.unknown_name",
    "grammar.ref_cycle",
    "grammar.regex_dialect",
    "grammar.compile_timeout",
    "limit.schema_depth",
    "limit.schema_size",
    "limit.enum_size",
    "limit.schema_branches",
    "limit.regex_size",
    "limit.grammar_size",
)
CODES: dict[str, str] = {name: _REGISTRY[name].summary for name in _NAMES}
"""The codes a :class:`GrammarError` carries (a view of :data:`sgflow.errors.CODES`)."""


class GrammarError(SgflowError):
    """A constraint sgflow refuses; see the module docstring for the codes.

    ``pointer`` (also ``field``) is the JSON pointer into the constraint; ``limit`` is set
    for ``limit.*`` codes. Errors are values: :func:`~sgflow.grammars.check` returns them in
    a list, :func:`~sgflow.grammars.compile_checked` raises the first.
    """

    def __init__(
        self,
        code: str,
        pointer: str,
        message: str,
        hint: str | None = "",
        *,
        limit: float | None = None,
    ) -> None:
        super().__init__(code, message, field=pointer, limit=limit, hint=hint)

    @property
    def pointer(self) -> str:
        return self.field or ""

    @pointer.setter
    def pointer(self, value: str) -> None:
        self.field = value

    def __repr__(self) -> str:
        return f"GrammarError({self.code!r}, {self.pointer!r}, {self.message!r})"


# xgrammar prefixes messages with "[12:34:56] /project/cpp/file.cc:83: ".
_LOCATION = re.compile(r"^\[[\d:]+\] \S+:\d+: ")


def clean_xgrammar_message(exc: BaseException) -> str:
    """The first line of an xgrammar exception, without its timestamp and C++ location."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    first = _LOCATION.sub("", first)
    # some messages carry a second prefix ("Check failed: (x) is false: ...")
    first = re.sub(r"^Check failed: \(.*?\) is false: ", "", first)
    return first or type(exc).__name__
