"""Evaluating a user's regex in Python: RE2 (linear time), reading the dialect xgrammar enforces.

Python's ``re`` backtracks and holds the GIL: ``^(a|aa)+$`` against ``"a" * 64 + "b"`` freezes
the whole process. Every user pattern sgflow evaluates (``pattern``, ``patternProperties``,
``format: regex`` values, the enforcement report) goes through this module instead: RE2
matches in time linear in the text whatever the pattern, and its memory per pattern is bounded
by :attr:`~sgflow.grammars.limits.Limits.max_regex_memory`.

A pattern in a JSON Schema means three things at once: JSON Schema says ECMA-262, xgrammar
generates strings from it (its own dialect, :mod:`~sgflow.grammars.regex_dialect`), and RE2
validates values with it. sgflow's dialect is xgrammar's: :func:`to_re2` spells it for RE2,
and :func:`dialect_issues` refuses (``grammar.regex_dialect``) what RE2 would read
differently or cannot compile. Side by side, each matching the whole probe text
(``tests/grammars/test_safe_regex.py`` keeps the evidence; ECMA-262 is ``new RegExp(p,
"u")`` as JSON Schema validators such as ajv run it; xgrammar is a schema ``pattern`` in
0.2.8, which never generates a character JSON must escape: control characters, ``"``, ``\\``;
``E`` is a syntax error):

===================  ======  ========  ======  =======  ====================================
pattern, text        ECMA    xgrammar  RE2     Python   sgflow
===================  ======  ========  ======  =======  ====================================
``\\s``, U+00A0       yes     no        no      yes      no: ``\\s`` ``\\d`` ``\\w`` are ASCII
``\\s``, U+2003       yes     no        no      yes      no (ECMA's ``\\s`` is Unicode)
``\\S``, U+00A0       no      yes       yes     no       yes
``\\d``, ``٣``        no      no        no      yes      no
``.``, newline       no      no        no      no       no
``\\u00e9``, ``é``     yes     yes       E       yes      yes: spelled ``\\x{00e9}`` for RE2
``\\ud83d\\ude00``     yes     no        E       no       refused: a surrogate is no character
``a{,3}``, ``aa``    E       E         no      yes      refused: RE2 reads ``{,3}`` as text
``a{1001}``          yes     yes       E       yes      refused: RE2 allows 1000 repetitions
``\\01``, NUL ``1``    E       no        no      no       refused: octal to RE2, NUL then
                                                        ``1`` to xgrammar (regex mode: yes)
``\\cA``, U+0001      yes     no        E       E        yes: spelled ``\\x{01}``
``[\\b]``, U+0008     yes     no        E       yes      yes: spelled ``\\x{08}``
``\\e``, U+001B       E       no        E       E        yes: spelled ``\\x{1b}`` (xgrammar's
                                                        regex mode reads ESC)
``(?<n>ab)``         yes     yes       yes     E        yes
``\\-``, ``-``         E       yes       yes     yes      yes
``(a+)+``, ``aaa``   yes     yes       yes     yes      yes: no backtracking hazard in RE2
``[[:alpha:]]``      E       no        yes     no       refused by regex_dialect, as all below
``\\p{L}``, ``é``      yes     E         yes     E        refused
``(?i)a``, ``A``     E       yes:      yes     yes      refused
                             dropped
``a(?=b)b``          yes     yes:      E       yes      refused
                             dropped
``\\bfoo``, ``\\Aab``  yes/E   E / no    yes     yes      refused
``ab\\Z``, ``ab\\z``   E       no        E/yes   yes/E    refused
===================  ======  ========  ======  =======  ====================================

Where only ECMA-262 differs (Unicode ``\\s``, ``\\-``), sgflow follows xgrammar, the engine
that generates; where only Python differs (Unicode ``\\d \\w \\s``; ``$`` also before a
final newline, tested with search), RE2 agrees with xgrammar and ECMA-262.

Matching follows JSON Schema: :func:`search` finds the pattern anywhere in the text (anchor
it with ``^…$`` to match the whole text); :func:`fullmatch` is for the enforcement report,
which asks what xgrammar generates (always a whole string). A pattern RE2 cannot compile —
over ``max_regex_memory``, more than 1000 repetitions, a syntax error — is refused the same
way, so a checked schema never holds a pattern that cannot be evaluated. Compiled patterns
are cached (:data:`CACHE_SIZE`, least recently used first out).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import re2

from sgflow.grammars.limits import get_limits
from sgflow.grammars.regex_dialect import RegexIssue

__all__ = [
    "CACHE_SIZE",
    "RegexRefused",
    "cache_clear",
    "compile_pattern",
    "dialect_issues",
    "fullmatch",
    "is_regex",
    "search",
    "to_re2",
]

CACHE_SIZE = 256  # compiled patterns kept; each holds at most max_regex_memory bytes
_MAX_REPEAT = 1000  # RE2's largest repetition count
_HEX = frozenset("0123456789abcdefABCDEF")
_DIALECT = "grammar.regex_dialect"
_SYNTAX = "grammar.invalid_regex"
# RE2's messages for a pattern that does not parse anywhere (other failures are dialect ones)
_SYNTAX_ERRORS = (
    "missing )",
    "missing ]",
    "unexpected )",
    "trailing \\",
    "missing argument",
    "invalid character class range",
    "bad repetition operator",
)
_QUANTIFIER = re.compile(r"\{(\d+)(,(\d*))?\}")


class RegexRefused(ValueError):
    """A pattern sgflow will not evaluate; ``issue`` says where and why (``code`` is
    ``grammar.regex_dialect`` or ``grammar.invalid_regex``)."""

    def __init__(self, issue: RegexIssue) -> None:
        super().__init__(f"{issue.message} (at character {issue.position})")
        self.issue = issue


def _issue(position: int, message: str, hint: str, code: str = _DIALECT) -> RegexIssue:
    return RegexIssue(position, code, message, hint)


class _Translator:
    """One pass over the pattern: the RE2 spelling, and the first construct RE2 would read
    differently from xgrammar (``issue``)."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.out: list[str] = []
        self.issue: RegexIssue | None = None
        self.in_class = False

    def run(self) -> str:
        p = self.p
        while self.i < len(p) and self.issue is None:
            c = p[self.i]
            if c == "\\":
                self.escape()
            elif c == "[" and not self.in_class:
                self.open_class()
            elif c == "]" and self.in_class:
                self.out.append(c)
                self.i += 1
                self.in_class = False
            elif c == "{" and not self.in_class:
                self.braces()
            else:
                self.out.append(c)
                self.i += 1
        return "".join(self.out)

    def refuse(self, position: int, message: str, hint: str) -> None:
        if self.issue is None:
            self.issue = _issue(position, message, hint)

    def escape(self) -> None:
        start, p = self.i, self.p
        nxt = p[start + 1] if start + 1 < len(p) else ""
        self.i += 2
        if nxt == "u":
            digits = p[start + 2 : start + 6]
            if len(digits) == 4 and all(ch in _HEX for ch in digits):
                if 0xD800 <= int(digits, 16) <= 0xDFFF:
                    self.refuse(
                        start,
                        f"'\\u{digits}' is half of a UTF-16 surrogate pair, not a character",
                        "write the character itself, or \\x{HHHHH} for its code point",
                    )
                self.out.append(f"\\x{{{digits}}}")
                self.i = start + 6
                return
        elif nxt == "0" and start + 2 < len(p) and p[start + 2].isdigit():
            self.refuse(
                start,
                f"'\\0{p[start + 2]}' is an octal escape to RE2 but NUL then "
                f"'{p[start + 2]}' to xgrammar",
                "write \\x00 followed by the digit, or \\xHH for the character you meant",
            )
        elif nxt == "0":
            self.out.append("\\x{00}")
            return
        elif nxt == "c" and start + 2 < len(p) and p[start + 2].isalpha():
            self.out.append(f"\\x{{{ord(p[start + 2]) % 32:02x}}}")
            self.i = start + 3
            return
        elif nxt == "e":
            self.out.append("\\x{1b}")
            return
        elif nxt == "b" and self.in_class:
            self.out.append("\\x{08}")
            return
        self.out.append(p[start : self.i])

    def open_class(self) -> None:
        self.in_class = True
        self.out.append("[")
        self.i += 1
        if self.p[self.i : self.i + 1] == "^":
            self.out.append("^")
            self.i += 1
        if self.p[self.i : self.i + 1] == "]":  # a literal "]" first (regex_dialect refuses it)
            self.out.append("\\]")
            self.i += 1

    def braces(self) -> None:
        start = self.i
        m = _QUANTIFIER.match(self.p, start)
        if m is None:
            self.refuse(
                start,
                "a '{' that does not start a repetition {n}, {n,} or {n,m}: RE2 reads it as "
                "text, xgrammar and ECMA-262 refuse it",
                "escape it as \\{ if you mean the character",
            )
            return
        counts = [int(x) for x in (m.group(1), m.group(3)) if x]
        if max(counts) > _MAX_REPEAT:
            self.refuse(
                start,
                f"a repetition of {max(counts)}: RE2 allows at most {_MAX_REPEAT}",
                "use a smaller count, or maxLength for long strings",
            )
        self.out.append(m.group(0))
        self.i = m.end()


def to_re2(pattern: str) -> tuple[str, RegexIssue | None]:
    """``pattern`` (xgrammar's dialect) spelled for RE2, and the first construct the two
    would read differently (None when there is none). See the module docstring."""
    t = _Translator(pattern)
    translated = t.run()
    return translated, t.issue


def _position(pattern: str, message: str) -> int:
    """Where RE2's error message points: its quoted fragment, found in the pattern."""
    _, _, fragment = message.partition(": ")
    while fragment:
        found = pattern.find(fragment)
        if found >= 0:
            return found
        fragment = fragment[:-1]
    return 0


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile(pattern: str, max_mem: int, max_chars: int) -> Any:
    """The compiled RE2 regexp of ``pattern``, or the :class:`RegexIssue` refusing it.
    Failures are cached too: a refused pattern sent again costs nothing."""
    if len(pattern) > max_chars:
        return _issue(
            max_chars,
            f"the regex is {len(pattern)} characters; the limit is {max_chars}",
            "shorten it",
        )
    translated, issue = to_re2(pattern)
    if issue is not None:
        return issue
    options = re2.Options()
    options.max_mem = max_mem
    options.log_errors = False  # RE2 would write every refusal to stderr
    options.never_capture = True  # booleans only: RE2 can always use its DFA
    try:
        return re2.compile(translated, options)
    except UnicodeEncodeError as exc:
        return _issue(
            exc.start,
            "the regex holds a lone UTF-16 surrogate, which is not a character",
            "remove it",
        )
    except re2.error as exc:
        text = exc.args[0] if exc.args else str(exc)
        message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        if "too large" in message or "too big" in message:
            return _issue(
                0,
                f"RE2 cannot compile it within {max_mem} bytes ({message})",
                "simplify it: fewer or smaller counted repetitions",
            )
        code = _SYNTAX if message.startswith(_SYNTAX_ERRORS) else _DIALECT
        hint = (
            "fix the pattern" if code == _SYNTAX else "RE2 cannot read this construct; rewrite it"
        )
        return _issue(_position(pattern, message), f"RE2: {message}", hint, code)


def compile_pattern(pattern: str) -> Any:
    """The RE2 regexp of ``pattern`` under the current limits (cached); raises
    :class:`RegexRefused` for a pattern that is too long, read differently by RE2 and
    xgrammar, or that RE2 cannot compile."""
    limits = get_limits()
    compiled = _compile(pattern, limits.max_regex_memory, limits.max_regex_chars)
    if isinstance(compiled, RegexIssue):
        raise RegexRefused(compiled)
    return compiled


def dialect_issues(pattern: str) -> list[RegexIssue]:
    """``[]`` when RE2 can evaluate ``pattern`` as xgrammar reads it, else the one problem
    (code ``grammar.regex_dialect``, or ``grammar.invalid_regex`` for a syntax error)."""
    try:
        compile_pattern(pattern)
    except RegexRefused as exc:
        return [exc.issue]
    return []


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text`` (JSON Schema's ``pattern``).
    Raises :class:`RegexRefused`. A text that is not valid Unicode (a lone surrogate)
    matches nothing."""
    compiled = compile_pattern(pattern)
    try:
        return compiled.search(text) is not None
    except UnicodeEncodeError:
        return False


def fullmatch(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches the whole of ``text`` (what xgrammar generates).
    Raises :class:`RegexRefused`."""
    compiled = compile_pattern(pattern)
    try:
        return compiled.fullmatch(text) is not None
    except UnicodeEncodeError:
        return False


def is_regex(value: object) -> bool:
    """``format: regex``: whether ``value`` is a string sgflow can evaluate as a regex
    (within the length and memory limits). Non-strings are not this format's business
    (True), as JSON Schema's format checkers do."""
    if not isinstance(value, str):
        return True
    try:
        compile_pattern(value)
    except RegexRefused:
        return False
    return True


def cache_clear() -> None:
    """Forget every compiled pattern (tests, or after changing the limits)."""
    _compile.cache_clear()
