"""The regex dialect sgflow accepts: what xgrammar 0.2.8 enforces as Python reads it.

xgrammar compiles a regex to an automaton, so it cannot do what needs backtracking, and
some constructs it does not refuse but silently reads differently (found by testing
``xgr.Grammar.from_regex``; ``tests/grammars/test_regex_dialect.py`` keeps the evidence):

==============================  ================================================================
construct                       xgrammar 0.2.8
==============================  ================================================================
``(?=`` ``(?!``                 error "Lookahead is not supported" (as a schema ``pattern``: a
                                warning, the assertion is dropped)
``(?<=`` ``(?<!``               error "Lookbehind is not supported"
``\\1`` ``(?P=n)`` ``\\k<n>``    error (backreferences)
``a*+`` ``a{2}+``               error "Two consecutive repetition modifiers"
``(?>…)`` ``(?i)`` ``(?i:…)``   error "Group modifier flag is not supported"
``(?P<n>…)`` ``(?#…)``          error; ``(?<n>…)`` and ``(?:…)`` work
``\\b`` ``\\B`` ``\\p{L}``        error
``\\A`` ``\\Z`` ``\\z`` ``\\G``    **silently matched as the letter itself** (warning on stderr)
``\\Q…\\E`` ``\\h`` ``\\x{41}``   **silently literal**, as above
``a^b`` ``a$b``                 **the anchor is silently dropped**
``[[:alpha:]]``                 compiles as the set ``[:alph`` then ``]`` (as Python does):
                                never the POSIX class that was meant
``[]a]`` ``[^]a]``              error / **matches something else**
two documented exceptions, accepted:
``.``                           also matches ``\\n`` in a regex constraint (Python: not
                                without ``re.S``); a schema ``pattern`` never generates it
``\\d`` ``\\w`` ``\\s``           ASCII only (Python: Unicode), so ``\\D \\W \\S`` match more than
                                in Python (``é`` is ``\\W`` to xgrammar); RE2 re-checks schema
                                ``pattern`` values after generation (``safe_regex``)
==============================  ================================================================

:func:`scan` reports all of these before xgrammar sees the pattern, with a position and a
hint. Patterns in JSON Schemas are also evaluated by RE2 after generation (and for inputs),
which reads a few more constructs differently: :mod:`~sgflow.grammars.safe_regex` translates
and refuses those. Nested quantifiers such as ``(a+)+`` are fine: RE2 matches in linear time
whatever the pattern, so sgflow no longer refuses them as backtracking hazards.
"""

from __future__ import annotations

import dataclasses

__all__ = ["RegexIssue", "scan"]

_HEX = set("0123456789abcdefABCDEF")
_CLASS_ESCAPES = set("dDwWsS")
_CONTROL_ESCAPES = set("tnrfv0ae")
_FLAG_LETTERS = set("aiLmsux-")


@dataclasses.dataclass(frozen=True)
class RegexIssue:
    """One problem at ``position`` (0-based) of the pattern; ``code`` is a GrammarError code."""

    position: int
    code: str
    message: str
    hint: str


class _Scanner:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.issues: list[RegexIssue] = []

    def issue(self, pos: int, message: str, hint: str, code: str = "grammar.unsupported") -> None:
        self.issues.append(RegexIssue(pos, code, message, hint))

    def at(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.p[j] if j < len(self.p) else ""

    def run(self) -> list[RegexIssue]:
        p = self.p
        while self.i < len(p):
            c = p[self.i]
            if c == "\\":
                self.escape(in_class=False)
            elif c == "[":
                self.char_class()
            elif c == "(":
                self.open_group()
            elif c in "*+?{":
                self.quantifier()
            elif c == "^" and self.i != 0:
                self.issue(
                    self.i,
                    "'^' is only an anchor at the very start; xgrammar drops it elsewhere",
                    "remove it: the regex always matches the whole text",
                )
                self.i += 1
            elif c == "$" and self.i != len(p) - 1:
                self.issue(
                    self.i,
                    "'$' is only an anchor at the very end; xgrammar drops it elsewhere",
                    "remove it, or escape it as \\$ for a dollar sign",
                )
                self.i += 1
            else:
                self.i += 1
        return self.issues

    def escape(self, *, in_class: bool) -> None:
        start, nxt = self.i, self.at(1)
        self.i += 2
        if nxt == "" or not nxt.isalnum():
            return  # "\." and friends: an escaped literal, same everywhere
        if nxt in "123456789" or (nxt == "k" and self.at() == "<"):
            self.issue(
                start,
                f"backreference '\\{nxt}' is not supported",
                "repeat the sub-pattern instead of referring back to it",
            )
        elif nxt in "bB" and not in_class:
            self.issue(
                start,
                f"word boundary '\\{nxt}' is not supported",
                "spell out the characters around the word, e.g. ( |$)",
            )
        elif nxt in "pP":
            self.issue(
                start,
                f"unicode property '\\{nxt}{{…}}' is not supported",
                "use an explicit class such as [A-Za-z\\u00c0-\\u024f]",
            )
        elif nxt == "x":
            if not (self.at() in _HEX and self.at(1) in _HEX):
                self.issue(
                    start,
                    "'\\x' needs exactly two hex digits ('\\x{…}' is read as letters)",
                    "write \\xHH or \\uHHHH",
                )
        elif nxt == "u":
            if not all(self.at(k) in _HEX for k in range(4)):
                self.issue(start, "'\\u' needs exactly four hex digits", "write \\uHHHH")
        elif nxt == "c":
            self.i += 1  # \cX: a control character
        elif nxt in _CLASS_ESCAPES or nxt in _CONTROL_ESCAPES or (in_class and nxt == "b"):
            pass
        else:
            self.issue(
                start,
                f"'\\{nxt}' is not an escape xgrammar knows; it would match the letter {nxt!r}",
                "anchors are implicit (the whole text must match); "
                "write the character itself if you meant it",
            )

    def char_class(self) -> None:
        start = self.i
        self.i += 1
        if self.at() == "^":
            self.i += 1
        if self.at() == "]":
            self.issue(
                self.i,
                "a ']' first in a class is read differently by xgrammar",
                "escape it: [\\]a]",
            )
            self.i += 1
        while self.i < len(self.p) and self.at() != "]":
            if self.at() == "\\":
                self.escape(in_class=True)
            elif self.at() == "[" and self.at(1) in ":=.":
                self.issue(
                    self.i,
                    "POSIX classes like [:alpha:] are not supported",
                    "use ranges, e.g. [A-Za-z] for [:alpha:]",
                )
                self.i += 2
            else:
                self.i += 1
        if self.i >= len(self.p):
            self.i = start + 1  # unterminated: leave it to xgrammar's parser error
            return
        self.i += 1

    def open_group(self) -> None:
        start, p = self.i, self.p
        rest = p[start + 1 : start + 4]
        unsupported = {
            "?=": ("lookahead '(?=' is not supported", "match the text itself, not a condition"),
            "?!": ("negative lookahead '(?!' is not supported", "list what is allowed instead"),
            "?<=": ("lookbehind '(?<=' is not supported", "match the preceding text itself"),
            "?<!": ("negative lookbehind '(?<!' is not supported", "list what is allowed"),
            "?P=": ("backreference '(?P=name)' is not supported", "repeat the sub-pattern"),
            "?P<": ("'(?P<name>…)' is not supported", "use (?<name>…) or (?:…)"),
            "?>": ("atomic group '(?>' is not supported", "use a plain group (…)"),
            "?#": ("comment group '(?#' is not supported", "remove the comment"),
            "?(": ("conditional group '(?(' is not supported", "write both alternatives"),
        }
        for prefix in sorted(unsupported, key=len, reverse=True):
            if rest.startswith(prefix):
                message, hint = unsupported[prefix]
                self.issue(start, message, hint)
                break
        else:
            if rest[:1] == "?" and rest[1:2] in _FLAG_LETTERS:
                self.issue(
                    start,
                    "inline flags like '(?i)' are not supported",
                    "spell cases out, e.g. [Yy]es for a case-insensitive 'yes'",
                )
        self.i += 1
        if rest.startswith("?:"):
            self.i += 2
        elif rest.startswith("?<") and rest[2:3] not in ("=", "!"):
            end = p.find(">", start)
            self.i = end + 1 if end > 0 else self.i + 2

    def quantifier(self) -> None:
        start, c = self.i, self.at()
        if c == "{":
            close = self.p.find("}", start)
            body = self.p[start + 1 : close] if close > 0 else ""
            lo, _, hi = body.partition(",")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                self.i += 1  # not a quantifier; xgrammar reports "Invalid repetition count"
                return
            self.i = close + 1
        else:
            self.i += 1
        if self.at() == "?":
            self.i += 1  # lazy: the same language, so the same automaton
        if self.at() == "+":
            self.issue(
                self.i,
                "possessive quantifiers ('*+', '++', '{n}+') are not supported",
                "drop the trailing '+'",
            )
            self.i += 1


def scan(pattern: str) -> list[RegexIssue]:
    """Every construct of ``pattern`` outside sgflow's dialect, in order of position.

    Syntax errors (an unclosed group, a bad range) are not reported here: xgrammar's
    parser reports them when the pattern is compiled.
    """
    return _Scanner(pattern).run()
