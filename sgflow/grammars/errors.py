"""The one error type of the grammar package, and its stable codes.

Every refusal is a :class:`GrammarError` carrying a ``code`` from :data:`CODES` (callers
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
from typing import Any

__all__ = ["CODES", "GrammarError", "clean_xgrammar_message", "escape_pointer"]

CODES: dict[str, str] = {
    "grammar.unsupported": "valid, but xgrammar cannot enforce it as written",
    "grammar.invalid_regex": "the regex does not parse",
    "grammar.invalid_ebnf": "the EBNF grammar does not parse",
    "grammar.invalid_schema": "the JSON Schema is invalid or cannot be compiled",
    "grammar.invalid_choices": "the choices list is empty, has empty or duplicate options",
    "grammar.unknown_name": "no library grammar has this name",
    "grammar.ref_cycle": "$refs that loop without producing JSON (or any loop, by default)",
    "grammar.regex_dialect": "a schema pattern RE2 and xgrammar would read differently",
    "grammar.compile_timeout": "compilation took longer than the time limit",
    "limit.schema_depth": "the JSON Schema nests too deeply",
    "limit.schema_size": "the JSON Schema is too large",
    "limit.enum_size": "an enum or choices list has too many options",
    "limit.regex_size": "a regex is too long",
    "limit.grammar_size": "an EBNF grammar is too long",
}


class GrammarError(Exception):
    """A constraint sgflow refuses; see the module docstring for the codes.

    ``limit`` is set for ``limit.*`` codes. Errors are values: :func:`~sgflow.grammars.check`
    returns them in a list, :func:`~sgflow.grammars.compile_checked` raises the first.
    """

    retryable = False

    def __init__(
        self,
        code: str,
        pointer: str,
        message: str,
        hint: str = "",
        *,
        limit: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.pointer = pointer
        self.message = message
        self.hint = hint
        self.limit = limit

    def to_dict(self) -> dict[str, Any]:
        """The error as the JSON body field of an API answer."""
        body: dict[str, Any] = {
            "code": self.code,
            "pointer": self.pointer,
            "message": self.message,
            "hint": self.hint,
        }
        if self.limit is not None:
            body["limit"] = self.limit
        return body

    def __str__(self) -> str:
        where = self.pointer or "/"
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{self.code} at {where}: {self.message}{hint}"

    def __repr__(self) -> str:
        return f"GrammarError({self.code!r}, {self.pointer!r}, {self.message!r})"


def escape_pointer(token: str | int) -> str:
    """One reference token of a JSON pointer (RFC 6901: ``~`` → ``~0``, ``/`` → ``~1``)."""
    return str(token).replace("~", "~0").replace("/", "~1")


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
