"""Reading a program file (YAML or JSON) with the line of every JSON pointer.

Sources are hostile until bounded: :func:`sgflow.jsonbounds.load_yaml` refuses deep nesting,
alias bombs, duplicate keys, non-finite and oversized numbers before a tree is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sgflow.jsonbounds import JsonBoundsError, load_yaml
from sgflow.programs.errors import ProgramError

__all__ = ["Source", "load_source", "parse_source"]

MAX_PROGRAM_BYTES = 1_000_000


@dataclass
class Source:
    """A parsed program: ``data``, and per JSON pointer its ``lines`` (1-based, of the key
    for a mapping's member) and ``spans`` (``(start, end)`` character offsets into the text:
    from a member's key, or an item's first character, to the end of its value)."""

    data: Any
    file: str | None = None
    lines: dict[str, int] = field(default_factory=dict)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)

    def line_of(self, pointer: str) -> int | None:
        """The line of ``pointer`` or of its nearest ancestor that has one."""
        p = pointer
        while True:
            if p in self.lines:
                return self.lines[p]
            if not p:
                return None
            p = p.rsplit("/", 1)[0]

    def span_of(self, pointer: str) -> tuple[int, int] | None:
        """The span of ``pointer`` or of its nearest ancestor that has one."""
        p = pointer
        while True:
            if p in self.spans:
                return self.spans[p]
            if not p:
                return None
            p = p.rsplit("/", 1)[0]


class SourceError(ValueError):
    """A source that cannot be read as a program: ``code`` is ``program.syntax`` or a
    :data:`sgflow.jsonbounds.CODES` code (``limit`` set for ``limit.*``), ``pointer`` where
    it is known."""

    def __init__(
        self,
        message: str,
        line: int | None = None,
        *,
        code: str = "program.syntax",
        pointer: str = "",
        limit: int | None = None,
        hint: str | None = "fix the YAML/JSON",
    ) -> None:
        super().__init__(message)
        self.line = line
        self.code = code
        self.pointer = pointer
        self.limit = limit
        self.hint = hint

    def problem(self, file: str | None = None) -> ProgramError:
        """The error as the checker reports problems."""
        return ProgramError(self.code, self.pointer, str(self), self.hint, file, self.line)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _walk(node: yaml.Node, pointer: str, source: Source) -> None:
    source.lines[pointer] = node.start_mark.line + 1
    source.spans[pointer] = (node.start_mark.index, node.end_mark.index)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{pointer}/{_escape(str(key.value))}"
            _walk(value, child, source)
            source.lines[child] = key.start_mark.line + 1
            source.spans[child] = (key.start_mark.index, value.end_mark.index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, f"{pointer}/{i}", source)


def parse_source(text: str, file: str | None = None) -> Source:
    """Parse YAML (JSON is YAML) and map pointers to lines; raise :class:`SourceError`."""
    if len(text.encode()) > MAX_PROGRAM_BYTES:
        raise SourceError(
            f"the program is larger than {MAX_PROGRAM_BYTES} bytes",
            code="limit.json_size",
            limit=MAX_PROGRAM_BYTES,
            hint="split it, or move long texts into inputs",
        )
    try:
        data, node = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SourceError(str(exc).splitlines()[0], mark.line + 1 if mark else None) from None
    except JsonBoundsError as exc:
        raise SourceError(
            exc.message,
            exc.line,
            code=exc.code,
            pointer=exc.pointer or "",
            limit=exc.limit,
            hint=exc.hint,
        ) from None
    source = Source(data=data, file=file)
    if node is not None:
        _walk(node, "", source)
    return source


def load_source(path: str | Path) -> Source:
    p = Path(path)
    return parse_source(p.read_text(encoding="utf-8"), file=str(p))
