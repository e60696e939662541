"""RE2 for user regexes: the dialect table of safe_regex's docstring, with its evidence.

Each row runs the pattern through ECMA-262 (node, ``new RegExp(p, "u")``), xgrammar (a schema
``pattern``), RE2 as it comes, Python's ``re`` and sgflow (the schema checks, then RE2 as
sgflow compiles it), each matching the whole probe text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from typing import Any

import pytest
import re2
import xgrammar as xgr

from sgflow.grammars import get_limits, limits, match
from sgflow.grammars import safe_regex as sr
from sgflow.grammars.schema_checks import pattern_errors

E = "error"  # the engine refuses the pattern
R = "refused"  # sgflow refuses the pattern at check time

# fmt: off
# (pattern, text, ECMA-262 (u), xgrammar schema pattern, RE2 as is, Python re, sgflow)
TABLE: list[tuple[str, str, Any, Any, Any, Any, Any]] = [
    (r"\s",            "\xa0",        True,  False, False, True,  False),
    (r"\s",            "\u2003",      True,  False, False, True,  False),
    (r"\S",            "\xa0",        False, True,  True,  False, True),
    (r"[^\s]",         "\xa0",        False, True,  True,  False, True),
    (r"[\s\S]",        "\xa0",        True,  True,  True,  True,  True),
    (r"\d",            "٣",           False, False, False, True,  False),
    (r"\w",            "é",           False, False, False, True,  False),
    (r"\W",            "é",           True,  True,  True,  False, True),
    (".",              "\n",          False, False, False, False, False),
    (".",              "é",           True,  True,  True,  True,  True),
    (r"\u00e9",        "é",           True,  True,  E,     True,  True),
    (r"[\u00e0-\u00ff]", "é",         True,  True,  E,     True,  True),
    (r"\ud83d\ude00",  "😀",          True,  False, E,     False, R),
    ("a{,3}",          "aa",          E,     E,     False, True,  R),
    ("a{,3}",          "a{,3}",       E,     E,     True,  False, R),
    ("a{1001}",        "a" * 1001,    True,  True,  E,     True,  R),
    (r"\01",           "\x001",       E,     False, False, False, R),
    (r"\cA",           "\x01",        True,  False, E,     E,     True),
    (r"[\b]",          "\x08",        True,  False, E,     True,  True),
    (r"\e",            "\x1b",        E,     False, E,     E,     True),
    ("(?<n>ab)",       "ab",          True,  True,  True,  E,     True),
    (r"\-",            "-",           E,     True,  True,  True,  True),
    ("(a+)+",          "aaa",         True,  True,  True,  True,  True),
    ("(a|aa)+b",       "aaab",        True,  True,  True,  True,  True),
    ("[[:alpha:]]",    "a",           E,     False, True,  False, R),
    (r"\p{L}",         "é",           True,  E,     True,  E,     R),
    ("(?i)a",          "A",           E,     True,  True,  True,  R),
    ("a(?=b)b",        "ab",          True,  True,  E,     True,  R),
    (r"\bfoo",         "foo",         True,  E,     True,  True,  R),
    (r"\Aab",          "ab",          E,     False, True,  True,  R),
    (r"ab\Z",          "ab",          E,     False, E,     True,  R),
    (r"ab\z",          "ab",          E,     False, True,  E,     R),
    (r"(a)\1",         "aa",          True,  E,     E,     True,  R),
    ("a++",            "aa",          E,     True,  E,     True,  R),
]
# fmt: on
IDS = [f"{p}~{t[:4]!r}" for p, t, *_ in TABLE]


def _xgrammar(pattern: str, text: str) -> Any:
    try:
        grammar = xgr.Grammar.from_json_schema(json.dumps({"type": "string", "pattern": pattern}))
    except RuntimeError:
        return E
    return match(grammar, json.dumps(text, ensure_ascii=False)).accepted


def _re2(pattern: str, text: str) -> Any:
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options).fullmatch(text) is not None
    except re2.error:
        return E


def _python(pattern: str, text: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return re.fullmatch(pattern, text) is not None
    except re.error:
        return E


def _sgflow(pattern: str, text: str) -> Any:
    if pattern_errors(pattern, "", get_limits()):
        return R
    return sr.fullmatch(pattern, text)


@pytest.mark.parametrize(("pattern", "text", "ecma", "xgrammar", "raw", "python", "sgflow"),
                         TABLE, ids=IDS)  # fmt: skip
def test_engines_side_by_side(
    pattern: str, text: str, ecma: Any, xgrammar: Any, raw: Any, python: Any, sgflow: Any
) -> None:
    assert _xgrammar(pattern, text) == xgrammar
    assert _re2(pattern, text) == raw
    assert _python(pattern, text) == python
    assert _sgflow(pattern, text) == sgflow


@pytest.mark.skipif(shutil.which("node") is None, reason="ECMA-262 is checked with node")
def test_ecma_column() -> None:
    script = (
        "const rows = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(rows.map(([p, t]) => {"
        "  try { return new RegExp('^(?:' + p + ')$', 'u').test(t); }"
        "  catch (e) { return 'error'; } })));"
    )
    rows = [[p, t] for p, t, *_ in TABLE]
    done = subprocess.run(
        ["node", "-e", script], input=json.dumps(rows), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [row[2] for row in TABLE]


def test_search_is_json_schemas_pattern_semantics() -> None:
    assert sr.search("b", "abc")  # unanchored, as ECMA-262's RegExp.test
    assert not sr.fullmatch("b", "abc")
    # Python's `$` also matches before a final newline; RE2's (and ECMA's) does not
    assert re.search("^a$", "a\n")
    assert not sr.search("^a$", "a\n")


def test_refusals_name_the_construct_position_and_a_hint() -> None:
    cases = {
        r"ab\ud800": ("grammar.regex_dialect", 2, "surrogate"),
        "x{,3}": ("grammar.regex_dialect", 1, "does not start a repetition"),
        "ab{2000}": ("grammar.regex_dialect", 2, "RE2 allows at most 1000"),
        r"a\01": ("grammar.regex_dialect", 1, "octal"),
        "(a": ("grammar.invalid_regex", 0, "missing )"),
        "[z-a]": ("grammar.invalid_regex", 1, "invalid character class range: z-a"),
        "((a{1,30}){1,30}){1,2}": ("grammar.regex_dialect", 17, "invalid repetition size"),
    }
    for pattern, (code, position, fragment) in cases.items():
        [issue] = sr.dialect_issues(pattern)
        assert (issue.code, issue.position) == (code, position), (pattern, issue)
        assert fragment in issue.message
        assert issue.hint


def test_memory_limit_refuses_what_does_not_fit() -> None:
    pattern = "[\\x{0}-\\x{10FFFF}]{1000}"  # ~1000 copies of a UTF-8 automaton
    assert sr.dialect_issues(pattern) == []
    with limits(max_regex_memory=1 << 16):
        [issue] = sr.dialect_issues(pattern)
    assert issue.code == "grammar.regex_dialect"
    assert "within 65536 bytes" in issue.message


def test_length_limit() -> None:
    with limits(max_regex_chars=5), pytest.raises(sr.RegexRefused, match="the limit is 5"):
        sr.search("abcdef", "abcdef")


def test_is_regex_is_format_regex() -> None:
    assert sr.is_regex("^[a-z]+$")
    assert sr.is_regex(42)  # not a string: not this format's business
    assert not sr.is_regex("(a")
    assert not sr.is_regex("a(?=b)")  # RE2 cannot evaluate it, so it is no regex here


def test_text_that_is_not_unicode_matches_nothing() -> None:
    assert not sr.search(".", "\ud800")
    assert not sr.fullmatch(".", "\ud800")


def test_compiled_patterns_are_cached_and_bounded() -> None:
    sr.cache_clear()
    for i in range(sr.CACHE_SIZE + 10):
        sr.search(f"^x{i}$", "x")
    sr.search("^x0$", "x")  # evicted long ago: compiled again
    info = sr._compile.cache_info()
    assert info.currsize == sr.CACHE_SIZE
    assert info.misses == sr.CACHE_SIZE + 11
    sr.search(f"^x{sr.CACHE_SIZE + 9}$", "x")
    assert sr._compile.cache_info().hits == 1
