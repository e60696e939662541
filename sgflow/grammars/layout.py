"""How constrained JSON is laid out: the whitespace between its tokens.

Whitespace is the one part of a JSON value the schema does not decide. Left free, every gap
(after ``{``, around ``:``, after ``,``) is a choice the model samples token by token;
fixed, it is part of the forced text the engine jumps forward over, decoded with its
neighbours in one step. Three layouts, as xgrammar builds them:

``indent`` (the default)
    ``json.dumps(value, indent=2)``: a newline and two spaces per level, ``": "`` and
    ``","``. What chat models write unprompted, so fixing it keeps their answers while every
    key, separator and indentation becomes forced text.
``compact``
    one line, ``", "`` and ``": "`` (``json.dumps(value)``).
``free``
    any whitespace, at most ``max_whitespace`` characters per gap (SGLang's default, with a
    bound so a small model cannot spin in whitespace).

Whitespace inside strings is the value's own, in every layout. Two quirks of xgrammar's
``indent``: an object or array the schema leaves open (``{"type": "object"}``, no
properties) is written on one line, and a recursive ``$ref`` repeats the indentation of the
level it is defined at. Both are still JSON; ``free`` avoids them.

Matching text written by hand (``sgflow grammars test``) uses :data:`ANY_LAYOUT`: the
whitespace between tokens is not part of a value.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

__all__ = ["ANY_LAYOUT", "DEFAULT_LAYOUT", "LAYOUTS", "JsonLayout", "LayoutName"]

LayoutName = Literal["indent", "compact", "free"]
LAYOUTS: tuple[LayoutName, ...] = ("indent", "compact", "free")
INDENT = 2


@dataclasses.dataclass(frozen=True)
class JsonLayout:
    """A layout (``indent``, ``compact`` or ``free``) and, for ``free``, the longest
    whitespace run per gap (None: unbounded, for matching text written by hand)."""

    name: LayoutName = "indent"
    max_whitespace: int | None = 4

    def __post_init__(self) -> None:
        if self.name not in LAYOUTS:
            raise ValueError(f"JSON layout must be one of {', '.join(LAYOUTS)}, got {self.name!r}")
        if self.max_whitespace is not None and self.max_whitespace <= 0:
            raise ValueError(f"max_whitespace must be positive, got {self.max_whitespace}")

    def xgrammar_options(self) -> dict[str, Any]:
        """Keyword arguments for xgrammar's ``compile_json_schema`` / ``from_json_schema``."""
        if self.name == "indent":
            return {"any_whitespace": False, "indent": INDENT}
        if self.name == "compact":
            return {"any_whitespace": False}
        if self.max_whitespace is None:
            return {"any_whitespace": True}
        return {"any_whitespace": True, "max_whitespace_cnt": self.max_whitespace}

    @property
    def key(self) -> str:
        """What distinguishes grammars built with this layout (for caches)."""
        return self.name if self.name != "free" else f"free{self.max_whitespace or ''}"


DEFAULT_LAYOUT = JsonLayout()
# any whitespace at all: a value written by hand matches whatever its layout
ANY_LAYOUT = JsonLayout("free", max_whitespace=None)
