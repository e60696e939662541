"""`sgflow grammars list | show | test`, through the argparse wiring sgflow.cli uses."""

from __future__ import annotations

import argparse
import json

import pytest

from sgflow.grammars import cli


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sgflow")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    return cli.run(parser.parse_args(["grammars", *argv]))


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "kind", "description"]
    assert any(line.split()[:2] == ["iso-date", "regex"] for line in lines)


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name": "yes-no", "kind": "regex", "description": rows[-1]["description"]} in rows
    assert set(rows[0]) == {"name", "kind", "description"}


def test_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("show", "sql-select") == 0
    assert capsys.readouterr().out.startswith("# sql-select:")
    assert run("show", "yes-no", "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["source"] == "(yes|no)" and body["examples_valid"] == ["yes", "no"]


@pytest.mark.parametrize(
    ("name", "text", "status", "first_line"),
    [
        ("iso-date", "2024-03-04", 0, "accepted"),
        ("iso-date", "2024-1x-04", 1, "rejected at character 6"),
        ("iso-date", "2024-03", 1, "rejected at character 7 (the text ends before the grammar"),
        ("sql-select", "SELECT * FROM t;", 0, "accepted"),
        ("sql-select", "SELECT * FROM t; DROP TABLE t;", 1, "rejected at character 16"),
        ("invoice", '{"vendor": 1}', 1, "rejected at character 11"),
    ],
)
def test_test(
    name: str, text: str, status: int, first_line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("test", name, text) == status
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(first_line)
    if status:
        assert out[1] == f"  {text}" and out[2].index("^") - 2 == int(first_line.split()[3])


def test_test_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("test", "yes-no", "maybe", "--json") == 1
    assert json.loads(capsys.readouterr().out) == {
        "name": "yes-no",
        "accepted": False,
        "position": 0,
        "incomplete": False,
    }


def test_unknown_name_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("test", "nope", "x") == 2
    assert "grammar.unknown_name" in capsys.readouterr().err
    assert run("show", "nope", "--json") == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "grammar.unknown_name"
