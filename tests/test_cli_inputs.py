"""``--input`` pairs, shared by ``sgflow run`` and ``sgflow submit``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sgflow.cli_inputs import parse_inputs


def test_strings_files_and_json(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("hello\nworld")
    base = tmp_path / "in.json"
    base.write_text(json.dumps({"a": 1, "b": "x"}))
    got = parse_inputs(["b=2024", f"d=@{doc}", "n:=42", "tags:=[1, 2]", "eq=a=b"], str(base))
    assert got == {"a": 1, "b": "2024", "d": "hello\nworld", "n": 42, "tags": [1, 2], "eq": "a=b"}


@pytest.mark.parametrize(
    ("pairs", "needle"),
    [
        (["novalue"], "not K=V"),
        (["=x"], "not K=V"),
        (["n:={nope"], "not JSON"),
        (["d=@/nonexistent/file"], "No such file"),
    ],
)
def test_refusals(pairs: list[str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_inputs(pairs)


def test_the_inputs_file_must_be_an_object(tmp_path: Path) -> None:
    bad = tmp_path / "in.json"
    bad.write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        parse_inputs([], str(bad))
