"""Catastrophic regexes and the inputs that make a backtracking engine (Python's ``re``,
PCRE, JavaScript's) take exponential or high-polynomial time, as data.

Each case says what sgflow does with the pattern in a JSON Schema: ``None`` when it is
accepted (valid for xgrammar and RE2: RE2 then evaluates it in linear time), else the code
that refuses it at check time. ``hostile`` is a text that does not match (the slow case for
a backtracker) unless ``matches`` says it does (``(a?){n}a{n}``, Thompson's example, is slow
to *succeed*). Sources: the OWASP ReDoS page, Cox's "Regular Expression Matching Can Be Simple
And Fast", and npm advisories (named per case).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CORPUS", "RegexCase"]


@dataclass(frozen=True)
class RegexCase:
    name: str
    pattern: str
    hostile: str
    refused: str | None = None  # the check-time code, or None when accepted
    matches: bool = False  # whether `hostile` matches (search semantics, like JSON Schema)
    source: str = ""


A40 = "a" * 40
CORPUS: list[RegexCase] = [
    # -- accepted: valid for xgrammar and RE2, hostile to a backtracker ----------------------
    RegexCase("nested-plus", "^(a+)+$", A40 + "!", source="OWASP"),
    RegexCase("alternation-overlap", "^(a|aa)+$", "a" * 64 + "b", source="issue 9"),
    RegexCase("optional-in-plus", "^(a|a?)+$", A40 + "b", source="OWASP"),
    RegexCase("dot-star-group-count", "^(.*a){20}$", "a" * 30 + "b", source="OWASP"),
    RegexCase("word-space", r"^(\w+\s?)*$", A40 + "!", source="common validator"),
    RegexCase("thompson", "^(a?){30}a{30}$", "a" * 30, matches=True, source="Cox 2007"),
    RegexCase(
        "owasp-email",
        r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+[.]{1}"
        r"(([a-z]{2,3})|([a-z]{2,3}[.]{1}[a-z]{2,3}))$",
        A40 + "!",
        source="OWASP email validation",
    ),
    RegexCase("owasp-java-classname", "^(([a-z])+.)+[A-Z]([a-z])+$", A40 + "!", source="OWASP"),
    RegexCase(
        "owasp-person-name",
        r"^[a-zA-Z]+(([\'\,\.\- ][a-zA-Z ])?[a-zA-Z]*)*$",
        A40 + "!",
        source="OWASP (RegExLib person name)",
    ),
    RegexCase("digits-star", r"^(\d+)*$", "1" * 40 + "a"),
    RegexCase("letters-then-digit", "^([a-z]+)*[0-9]$", A40 + "!"),
    RegexCase("x-plus-x-plus", "^(x+x+)+y$", "x" * 40),
    RegexCase("digit-or-two", r"^(\d|\d\d)+$", "1" * 60 + "a"),
    RegexCase("ab-a-b", "^(ab|a|b)*c$", "ab" * 40),
    RegexCase("a-aa-aaa", "^(a|aa|aaa)*b$", "a" * 50 + "c"),
    RegexCase("dot-plus-plus", "^(.+)+$", "x" * 40 + "\n!"),
    RegexCase("star-of-star", "^(a*)*$", A40 + "b"),
    RegexCase("duplicate-alternatives", "^(?:a|a)*$", A40 + "!"),
    RegexCase("plus-star-mix", "^([0-9]+[0-9]*)+$", "1" * 40 + "!"),
    RegexCase("word-dot", r"^(\w+\.?)+$", A40 + "!"),
    RegexCase("csv-fields", "^(.*?,){11}P", "a," * 40, source="regular-expressions.info"),
    RegexCase("cloudflare-2019", ".*(?:.*=.*)", "x" * 5000, source="Cloudflare outage 2019"),
    RegexCase("polynomial-stars", "a*a*a*a*a*a*b", "a" * 2000),
    RegexCase("comma-split", " *, *", " " * 20_000, source="fresh, CVE-2017-16119"),
    RegexCase(
        "url",
        r"^(https?://)?([\da-z.-]+)\.([a-z.]{2,6})([/\w .-]*)*/?$",
        "http://example.com/" + "a" * 40 + "!",
        source="a widely copied URL regex",
    ),
    RegexCase("email-local-part", "^([a-z0-9_.-]+)*@example\\.com$", A40 + "@example.co"),
    RegexCase("domain-labels", r"^(([a-z0-9]+[-.]?)+)@", A40),
    RegexCase(
        "ms-duration",
        r"^((?:\d+)?\.?\d+) *(milliseconds?|msecs?|ms|seconds?|secs?|s|minutes?|mins?|m"
        r"|hours?|hrs?|h|days?|d|years?|yrs?|y)?$",
        "1" * 5000 + "!",
        source="ms, CVE-2015-8315 (without its /i flag)",
    ),
    RegexCase(
        "moment-month",
        r"[0-9]*['a-z\u00A0-\u05FF\u0700-\uD7FF\uFF07\uFF10-\uFFEF]+"
        r"|[\u0600-\u06FF\/]+(\s*?[\u0600-\u06FF]+){1,2}",
        "0" * 20_000,
        source="moment, CVE-2017-18214 (without its /i flag)",
    ),
    RegexCase("nullable-nested", r"^(\s*a*)*$", A40 + "!"),
    RegexCase("counted-dot-star", "(.*){1,100}[bc]", "a" * 60),
    # -- refused at check time --------------------------------------------------------------
    RegexCase("backreference", r"^(a+)\1+$", A40 + "!", refused="grammar.unsupported"),
    RegexCase("lookahead", "^(?=(a+))+b", A40, refused="grammar.unsupported"),
    RegexCase("lookbehind", "(?<=a)(a+)+b", A40, refused="grammar.unsupported"),
    RegexCase("possessive", "^(?:a|aa)++$", A40 + "!", refused="grammar.unsupported"),
    RegexCase("atomic", "(?>a+)+b", A40, refused="grammar.unsupported"),
    RegexCase("word-boundary", r"\b(\w+\s?)*\b!", A40, refused="grammar.unsupported"),
    RegexCase("inline-flags", "(?i)^(a|aa)+$", "A" * 64 + "b", refused="grammar.unsupported"),
    RegexCase("unicode-property", r"^(\p{L}+)+$", "é" * 40 + "!", refused="grammar.unsupported"),
    RegexCase("end-anchor-Z", r"^(a+)+\Z", A40 + "!", refused="grammar.unsupported"),
    RegexCase(
        "repetition-product", "^(a{1,30}){1,50}$", A40 + "!", refused="grammar.regex_dialect"
    ),
    RegexCase(
        "huge-nested-counts", r"^(\w{1,1000}){1,1000}$", A40 + "!", refused="grammar.regex_dialect"
    ),
    RegexCase("open-brace-count", "^(a|aa){,64}$", A40 + "b", refused="grammar.regex_dialect"),
    RegexCase(
        "over-regex-memory",
        "^" + "[^,]{0,999}" * 8 + "$",
        "x" * 5000 + ",",
        refused="grammar.regex_dialect",
    ),
    RegexCase("unbalanced", "^(a|aa+$", A40, refused="grammar.invalid_regex"),
]
