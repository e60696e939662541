"""Reading a program file (YAML or JSON) with the line of every JSON pointer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Source", "load_source", "parse_source"]

MAX_PROGRAM_BYTES = 1_000_000


@dataclass
class Source:
    data: Any
    file: str | None = None
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, pointer: str) -> int | None:
        """The line of ``pointer`` or of its nearest ancestor that has one."""
        p = pointer
        while True:
            if p in self.lines:
                return self.lines[p]
            if not p:
                return None
            p = p.rsplit("/", 1)[0]


class SourceError(ValueError):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _walk(node: yaml.Node, pointer: str, lines: dict[str, int]) -> None:
    lines[pointer] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{pointer}/{_escape(str(key.value))}"
            lines[child] = key.start_mark.line + 1
            _walk(value, child, lines)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, f"{pointer}/{i}", lines)


def parse_source(text: str, file: str | None = None) -> Source:
    """Parse YAML (JSON is YAML) and map pointers to lines; raise SourceError."""
    if len(text.encode()) > MAX_PROGRAM_BYTES:
        raise SourceError(f"the program is larger than {MAX_PROGRAM_BYTES} bytes")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SourceError(str(exc).splitlines()[0], mark.line + 1 if mark else None) from None
    lines: dict[str, int] = {}
    if node is not None:
        _walk(node, "", lines)
    # round-trip through JSON so YAML-only types (dates) become what a JSON user would send
    try:
        data = json.loads(json.dumps(data, default=str))
    except (TypeError, ValueError) as exc:
        raise SourceError(f"the program is not JSON-compatible: {exc}") from None
    return Source(data=data, file=file, lines=lines)


def load_source(path: str | Path) -> Source:
    p = Path(path)
    return parse_source(p.read_text(encoding="utf-8"), file=str(p))
