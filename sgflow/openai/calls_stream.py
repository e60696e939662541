"""Function calls out of a stream of generated JSON, as they are generated.

The model writes its calls as JSON under the schema of
:func:`sgflow.openai.schemas.calls_schema`: ``{"name": "f", "arguments": {…}}``, or an array
of those. The grammar puts ``name`` before ``arguments`` (properties are generated in the
declared order), so a call's name is known before its first argument character. OpenAI's
streams send a call's id and name once, then its ``arguments`` text in pieces;
:class:`CallScanner` turns the generated text, fed in arbitrary pieces, into those pieces:
the raw text of each call's ``arguments`` value, character for character, so the pieces of
one call add up to a JSON document (what the SDK's partial parser reads after each chunk).

It is a small JSON tokenizer (strings with escapes, nesting depth) that only looks at the
keys of the call objects: it trusts the grammar for the rest and never raises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["CallPiece", "CallScanner"]


@dataclass(frozen=True)
class CallPiece:
    """A piece of call ``call``'s arguments text; ``name`` is set on its first piece only."""

    call: int
    text: str
    name: str | None = None


class CallScanner:
    """Feed the generated text of a calls step (``array``: parallel calls, a JSON array)
    with :meth:`feed`; each call returns the :class:`CallPiece`\\ s it completed."""

    def __init__(self, *, array: bool) -> None:
        self.call_depth = 2 if array else 1
        self.depth = 0
        self.in_string = False
        self.escaped = False
        self.call = -1
        self.expect_key = False
        self.key: str | None = None
        self.buffer: list[str] | None = None  # a key or the name being read
        self.reading = ""  # "key" | "name"
        self.name: str | None = None
        self.awaiting_value = False
        self.capturing = False
        self.scalar = False
        self.started = False

    def feed(self, text: str) -> list[CallPiece]:
        pieces: list[CallPiece] = []
        out: list[str] = []
        for c in text:
            if self.capturing:
                if self._capture(c, out):
                    if not self.capturing:  # `c` closed the value
                        self._flush(out, pieces)
                    continue
                self._flush(out, pieces)  # the value ended before `c`
            self._step(c, out, pieces)
        self._flush(out, pieces)
        return pieces

    def _flush(self, out: list[str], pieces: list[CallPiece]) -> None:
        if out or (self.capturing and not self.started):
            name = None if self.started else self.name
            self.started = True
            pieces.append(CallPiece(self.call, "".join(out), name))
            out.clear()

    def _capture(self, c: str, out: list[str]) -> bool:
        """One character of an ``arguments`` value; False when it ended before ``c``."""
        if self.in_string:
            out.append(c)
            if self.escaped:
                self.escaped = False
            elif c == "\\":
                self.escaped = True
            elif c == '"':
                self.in_string = False
            return True
        if self.scalar and self.depth == self.call_depth and (c in ",}" or c.isspace()):
            self.capturing = False
            return False
        out.append(c)
        if c == '"':
            self.in_string = True
        elif c in "{[":
            self.depth += 1
        elif c in "}]":
            self.depth -= 1
            if self.depth == self.call_depth:
                self.capturing = False
        return True

    def _step(self, c: str, out: list[str], pieces: list[CallPiece]) -> None:
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif c == "\\":
                self.escaped = True
            elif c == '"':
                self.in_string = False
                self._string_done()
                return
            if self.buffer is not None:
                self.buffer.append(c)
            return
        if c.isspace():
            return
        if self.awaiting_value and self.key == "arguments":
            self.awaiting_value = False
            self.capturing, self.started, self.scalar = True, False, c not in "{["
            self._flush(out, pieces)  # the first piece names the call
            self._capture(c, out)
            return
        if c == '"':
            self.in_string = True
            at_call = self.depth == self.call_depth
            if at_call and self.expect_key:
                self.buffer, self.reading = [], "key"
            elif at_call and self.awaiting_value and self.key == "name":
                self.buffer, self.reading = [], "name"
            else:
                self.buffer = None
            self.awaiting_value = False
        elif c in "{[":
            self.depth += 1
            self.awaiting_value = False
            if self.depth == self.call_depth and c == "{":
                self.call += 1
                self.name, self.key, self.expect_key = None, None, True
        elif c in "}]":
            self.depth -= 1
        elif c == ":" and self.depth == self.call_depth:
            self.awaiting_value = True
        elif c == "," and self.depth == self.call_depth:
            self.expect_key = True
        else:
            self.awaiting_value = False

    def _string_done(self) -> None:
        if self.buffer is None:
            return
        try:
            value = json.loads('"' + "".join(self.buffer) + '"')
        except ValueError:
            value = "".join(self.buffer)
        if self.reading == "key":
            self.key, self.expect_key = value, False
        else:
            self.name = value
        self.buffer = None
