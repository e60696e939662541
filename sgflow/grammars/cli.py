"""``sgflow grammars``: list, show and try the named grammars of the library.

- ``sgflow grammars list``             a table of name, kind, description
- ``sgflow grammars show NAME``        the grammar's source file
- ``sgflow grammars test NAME TEXT``   exit 0 and ``accepted`` if the grammar accepts the
  whole TEXT, else exit 1 and ``rejected at character N`` (0-based)

Each takes ``--json``. An unknown name exits 2 with the error on stderr. Wired into the
top-level parser by ``sgflow.cli`` with :func:`add_parser` and :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sgflow.grammars.check import compile_checked
from sgflow.grammars.compiler import match
from sgflow.grammars.errors import GrammarError
from sgflow.grammars.layout import ANY_LAYOUT
from sgflow.grammars.library import get_grammar, grammar_source, list_grammars
from sgflow.grammars.spec import Named

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``grammars`` and its subcommands to ``subparsers`` (from ``add_subparsers()``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "grammars", help="list, show and test the named grammars of the library"
    )
    sub = parser.add_subparsers(dest="grammars_command", required=True)
    p_list = sub.add_parser("list", help="name, kind and description of every grammar")
    p_show = sub.add_parser("show", help="print a grammar's source")
    p_show.add_argument("name", help="a name from `sgflow grammars list`")
    p_test = sub.add_parser("test", help="does the grammar accept TEXT? (exit 0 / 1)")
    p_test.add_argument("name", help="a name from `sgflow grammars list`")
    p_test.add_argument("text", help="the whole text to match")
    for p in (p_list, p_show, p_test):
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the subcommand in ``args``; returns the exit status."""
    try:
        if args.grammars_command == "list":
            return _list(args.json)
        if args.grammars_command == "show":
            return _show(args.name, args.json)
        return _test(args.name, args.text, args.json)
    except GrammarError as err:
        if args.json:
            print(json.dumps({"error": err.to_dict()}, indent=2))
        else:
            print(f"sgflow grammars: {err}", file=sys.stderr)
        return 2


def _list(as_json: bool) -> int:
    grammars = list_grammars()
    if as_json:
        rows = [{"name": g.name, "kind": g.kind, "description": g.description} for g in grammars]
        print(json.dumps(rows, indent=2))
        return 0
    name_w = max(len("name"), *(len(g.name) for g in grammars))
    kind_w = max(len("kind"), *(len(g.kind) for g in grammars))
    print(f"{'name':{name_w}}  {'kind':{kind_w}}  description")
    for g in grammars:
        print(f"{g.name:{name_w}}  {g.kind:{kind_w}}  {g.description}")
    return 0


def _show(name: str, as_json: bool) -> int:
    source = grammar_source(name)
    if as_json:
        info = next(g for g in list_grammars() if g.name == name)
        body = {
            "name": name,
            "kind": info.kind,
            "file": info.file,
            "description": info.description,
            "source": source,
            "examples_valid": list(info.examples_valid),
            "examples_invalid": list(info.examples_invalid),
        }
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        print(source, end="" if source.endswith("\n") else "\n")
    return 0


def _test(name: str, text: str, as_json: bool) -> int:
    get_grammar(name)  # an unknown name is exit 2, not "rejected"
    # the whitespace between JSON tokens is not part of a value: any layout matches
    result = match(compile_checked(Named(name), layout=ANY_LAYOUT), text)
    if as_json:
        body: dict[str, Any] = {"name": name, "accepted": result.accepted}
        if not result.accepted:
            body["position"] = result.position
            body["incomplete"] = result.incomplete
        print(json.dumps(body))
        return 0 if result.accepted else 1
    if result.accepted:
        print("accepted")
        return 0
    position = result.position or 0
    why = " (the text ends before the grammar is complete)" if result.incomplete else ""
    print(f"rejected at character {position}{why}")
    line_start = text.rfind("\n", 0, position) + 1
    line_end = text.find("\n", position)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    print(f"  {line}\n  {' ' * (position - line_start)}^")
    return 1
