"""Programs' EBNF (xgrammar's dialect, as SGLang takes it) translated to llama.cpp's GBNF.

The two dialects share their core (``name ::= …``, quoted strings, character classes,
``|``, grouping, ``* + ?`` and ``{m,n}``), so the translation is token by token, and exact:

- rule names are renamed to GBNF's alphabet (letters, digits, ``-``): ``_`` and ``.``
  become ``-``; a rename that would merge two rules is refused;
- every rule is written on one line (GBNF ends a rule at a newline outside parentheses;
  xgrammar lets a rule run on until the next ``name ::=``) and comments are dropped;
- anything GBNF cannot say is refused, never approximated: lookahead assertions
  (``(= …)``), escapes other than ``\\n \\r \\t \\\\ \\" \\[ \\] \\- \\xHH \\uHHHH``.

:func:`to_gbnf` raises :class:`Untranslatable` naming the construct.
"""

from __future__ import annotations

import re

__all__ = ["Untranslatable", "to_gbnf"]

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<klass>\[(?:[^\]\\\n]|\\.)*\])
  | (?P<define>::=)
  | (?P<lookahead>\(=)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)
  | (?P<repeat>\{\s*\d+\s*(?:,\s*\d*\s*)?\})
  | (?P<op>[|()*+?.])
    """,
    re.X,
)
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[nrt\\\"\[\]\-^]|.)")
_GOOD_ESCAPES = set('nrt\\"[]-^')


class Untranslatable(ValueError):
    """The grammar uses something GBNF cannot express (``construct``)."""

    def __init__(self, construct: str, message: str) -> None:
        super().__init__(message)
        self.construct = construct


def _escapes_ok(literal: str) -> None:
    for m in _ESCAPE.finditer(literal):
        escape = m.group(1)
        if len(escape) == 1 and escape not in _GOOD_ESCAPES:
            raise Untranslatable("escape", f"the escape \\{escape} has no GBNF equivalent")


def _tokens(grammar: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(grammar):
        m = _TOKEN.match(grammar, pos)
        if m is None:
            raise Untranslatable(
                "syntax", f"unexpected {grammar[pos : pos + 12]!r} at character {pos}"
            )
        kind = m.lastgroup or ""
        if kind == "lookahead":
            raise Untranslatable("lookahead", "lookahead assertions (= …) have no GBNF equivalent")
        if kind in ("string", "klass"):
            _escapes_ok(m.group())
        if kind not in ("space", "comment"):
            out.append((kind, m.group()))
        pos = m.end()
    return out


def to_gbnf(grammar: str) -> str:
    """``grammar`` (EBNF with a ``root`` rule) as a GBNF grammar with the same language."""
    tokens = _tokens(grammar)
    names = {text for kind, text in tokens if kind == "name"}
    renamed = {n: re.sub(r"[_.]", "-", n) for n in names}
    merged = [n for n in names if list(renamed.values()).count(renamed[n]) > 1]
    if merged:
        raise Untranslatable(
            "rule-name", f"rules {', '.join(sorted(merged))} would get the same GBNF name"
        )
    rules: list[list[str]] = []
    for i, (kind, text) in enumerate(tokens):
        starts_rule = kind == "name" and i + 1 < len(tokens) and tokens[i + 1][0] == "define"
        if starts_rule:
            rules.append([])
        elif not rules:
            raise Untranslatable("syntax", "the grammar must start with a rule `name ::= …`")
        if kind == "repeat":
            text = re.sub(r"\s+", "", text)
        rules[-1].append(renamed.get(text, text) if kind == "name" else text)
    if not any(rule[0] == "root" for rule in rules):
        raise Untranslatable("root", "the grammar has no `root` rule")
    return "\n".join(" ".join(rule) for rule in rules) + "\n"
