"""sgflow's regex dialect: what scan() refuses, and the xgrammar behaviour that is the reason."""

from __future__ import annotations

import re
import warnings

import pytest
import xgrammar as xgr

from sgflow.grammars import Regex, check, match
from sgflow.grammars.regex_dialect import scan

# fmt: off
# (pattern, code scan reports, message fragment, what xgrammar 0.2.8 does with it)
#   "raises": from_regex fails;  ("mishandles", text, accepted): compiles, and accepts `text`
#   (or not); for grammar.unsupported rows Python's re.fullmatch does the opposite, except
#   [[:alpha:]], which both read as the set "[:alph" followed by "]" (not what was meant)
REFUSED = [
    ("a(?=b)b",        "grammar.unsupported", "lookahead",        "raises"),
    ("a(?!c)b",        "grammar.unsupported", "negative lookahead", "raises"),
    ("(?<=a)b",        "grammar.unsupported", "lookbehind",       "raises"),
    ("(?<!a)b",        "grammar.unsupported", "negative lookbehind", "raises"),
    (r"(a)\1",         "grammar.unsupported", "backreference",    "raises"),
    ("(?P<x>a)(?P=x)", "grammar.unsupported", "(?P<name>",        "raises"),
    (r"(?<x>a)\k<x>",  "grammar.unsupported", "backreference",    "raises"),
    ("a++",            "grammar.unsupported", "possessive",       "raises"),
    ("a{2}+",          "grammar.unsupported", "possessive",       "raises"),
    ("(?>ab)",         "grammar.unsupported", "atomic group",     "raises"),
    ("(?i)abc",        "grammar.unsupported", "inline flags",     "raises"),
    ("(?i:abc)",       "grammar.unsupported", "inline flags",     "raises"),
    ("(?#note)a",      "grammar.unsupported", "comment group",    "raises"),
    (r"\bfoo",         "grammar.unsupported", "word boundary",    "raises"),
    (r"\p{L}",         "grammar.unsupported", "unicode property", "raises"),
    (r"\Aab\Z",        "grammar.unsupported", "'\\A' is not an escape", ("mishandles", "ab", False)),
    (r"ab\z",          "grammar.unsupported", "'\\z' is not an escape", ("mishandles", "abz", True)),
    (r"\x{41}",        "grammar.unsupported", "two hex digits",   ("mishandles", "A", False)),
    ("a^b",            "grammar.unsupported", "'^' is only an anchor", ("mishandles", "ab", True)),
    ("a$b",            "grammar.unsupported", "'$' is only an anchor", ("mishandles", "ab", True)),
    ("[[:alpha:]]",    "grammar.unsupported", "POSIX classes",    ("mishandles", "a", False)),
    ("[^]a]",          "grammar.unsupported", "']' first",        ("mishandles", "b", False)),
]

ACCEPTED = [
    r"\d{4}-(0[1-9]|1[0-2])", r"[\w.-]+@[a-z]+(\.[a-z]+)*", r"(\.[a-z]+)*", r"([a-z]+\.)+",
    "(ab|cd)+", "a*?", "x{2,3}?", "^abc$", "(?:ab)+c", "(?<name>ab)", r"\x41\u00e9", r"[\b]",
    r"\.\*\+\?\(\)\[\]\{\}\|\\\^\$", r"(\d{1,3}\.){3}\d{1,3}", "[a-z-]", r"\cA", "a|",
    # nested quantifiers: a hazard for a backtracking engine, not for xgrammar or RE2
    "(a+)+", r"(\w+\s?)*", "((ab)+)+", "(a|aa)+", "(a|a?)+", "(.*a){20}",
]
# fmt: on


@pytest.mark.parametrize(("pattern", "code", "fragment", "xgrammar"), REFUSED)
def test_refused(pattern: str, code: str, fragment: str, xgrammar: object) -> None:
    issues = scan(pattern)
    assert [i.code for i in issues][:1] == [code]
    assert fragment in issues[0].message
    assert issues[0].hint
    # the evidence: what xgrammar itself does with the pattern
    if xgrammar == "raises":
        with pytest.raises(RuntimeError):
            xgr.Grammar.from_regex(pattern)
        return
    assert isinstance(xgrammar, tuple)
    _, text, xgrammar_accepts = xgrammar
    assert match(xgr.Grammar.from_regex(pattern), text).accepted is xgrammar_accepts
    if code == "grammar.unsupported" and pattern != "[[:alpha:]]":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                python_accepts = re.fullmatch(pattern, text) is not None
        except re.error:
            return  # Python refuses the pattern outright
        assert python_accepts is not xgrammar_accepts


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_accepted(pattern: str) -> None:
    assert scan(pattern) == []
    assert check(Regex(pattern)) == []


# (pattern, text, re.fullmatch accepts, xgrammar accepts): accepted, documented differences
DIFFERENCES = [
    (".", "\n", False, True),  # xgrammar's dot matches a newline
    (r"\w", "é", True, False),  # \d \w \s are ASCII in xgrammar, Unicode in Python
    (r"\W", "é", False, True),
    (r"\s", "\u2003", True, False),
]


@pytest.mark.parametrize(("pattern", "text", "python", "xgrammar"), DIFFERENCES)
def test_documented_differences(pattern: str, text: str, python: bool, xgrammar: bool) -> None:
    assert scan(pattern) == []
    assert (re.fullmatch(pattern, text) is not None) is python
    assert match(xgr.Grammar.from_regex(pattern), text).accepted is xgrammar


def test_positions_point_at_the_construct() -> None:
    issues = scan("ab(?=c)d(?i)")
    assert [i.position for i in issues] == [2, 8]


def test_syntax_errors_are_left_to_xgrammar() -> None:
    assert scan("(ab") == []
    errors = check(Regex("(ab"))
    assert [e.code for e in errors] == ["grammar.invalid_regex"]
    assert "parenthesis is not closed" in errors[0].message
