"""Reading JSON (and YAML) that a user sent, every dimension bounded before or while parsing.

``json.loads`` alone lets a request through that breaks something later or at once: 20,000
nested arrays raise ``RecursionError``; an integer literal of 5,000 digits raises
``ValueError`` (Python 3.11's int limit), not ``JSONDecodeError``; ``NaN``, ``Infinity`` and
``1e999`` parse, then break validation and serialisation; ``"\\ud800"`` parses to a string
UTF-8 cannot encode (Redis then fails); a repeated key silently keeps its last value.
:func:`loads` refuses each of these with its own code, the JSON pointer (or position) where
it happened and the limit, and :func:`load_yaml` does the same for YAML program sources,
whose nesting and aliases ("billion laughs") are bounded before anything is built.

A top-level module because every layer reads user JSON (the API, the engine, the CLI,
program sources, batch lines) and none of them owns the others; it is pure (no I/O).

==========================  =================================================================
code                        refused because
==========================  =================================================================
``request.malformed_json``  not JSON (or not UTF-8); ``position`` is the character offset
``json.non_finite``         ``NaN``, ``Infinity``, ``-Infinity``, or a number literal too large
                            for a float (``1e999``): JSON has no such numbers
``json.lone_surrogate``     a ``\\uD800``-``\\uDFFF`` escape without its pair (not a character)
``json.duplicate_key``      an object names the same key twice (``pointer`` is the second)
``limit.json_depth``        arrays/objects nest deeper than ``max_depth`` (default
                            :data:`MAX_DEPTH`)
``limit.json_size``         the text is longer than ``max_size`` (default :data:`MAX_SIZE`)
``limit.json_number``       an integer literal has more than ``max_int_digits`` digits
                            (default :data:`MAX_INT_DIGITS`)
``limit.yaml_aliases``      YAML aliases expand to more than ``max_nodes`` nodes (default
                            :data:`MAX_YAML_NODES`), or an alias refers to its own node
==========================  =================================================================

Depth is found without recursion: a count of ``[`` and ``{`` answers for most texts, and
only a text with more of them than ``max_depth`` has its strings stripped (one C-speed
regex pass) and its brackets summed. A leading byte order mark is skipped (RFC 8259 lets
parsers ignore it; Windows tools write one).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any

import yaml

from sgflow.errors import CODES as _REGISTRY
from sgflow.errors import SgflowError

__all__ = [
    "CODES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_SIZE",
    "MAX_YAML_NODES",
    "JsonBoundsError",
    "load_yaml",
    "loads",
]

MAX_DEPTH = 128
"""Nesting of arrays/objects. ``grammars`` caps raw JSON nesting inside a schema at 4 times its
32-subschema limit = 128 too; 128 levels stay far from Python's recursion limit in every
consumer (``json``, pydantic, jsonschema's descent, ``copy.deepcopy``)."""
MAX_SIZE = 64 << 20
"""Characters of one text (bytes when bytes are given): the largest request body sgflow
takes (a batch upload)."""
MAX_INT_DIGITS = 100
"""Digits of one integer literal: 2**256 has 78; Python refuses more than 4300 itself, with a
``ValueError`` nobody expects from a JSON parser."""
MAX_YAML_NODES = 100_000
"""Nodes of a YAML document once its aliases are expanded (a 1 MB program has far fewer)."""

CODES: dict[str, str] = {
    name: _REGISTRY[name].summary
    for name in (
        "request.malformed_json",
        "json.non_finite",
        "json.lone_surrogate",
        "json.duplicate_key",
        "limit.json_depth",
        "limit.json_size",
        "limit.json_number",
        "limit.yaml_aliases",
    )
}
"""The codes a :class:`JsonBoundsError` carries (a view of :data:`sgflow.errors.CODES`)."""

_HINTS = {
    "request.malformed_json": "send a JSON document (RFC 8259), UTF-8 encoded",
    "json.non_finite": 'send a finite number, or a string such as "NaN" if you mean one',
    "json.lone_surrogate": "escape characters outside the BMP as a \\uD8xx\\uDCxx pair",
    "json.duplicate_key": "name each key once",
    "limit.json_depth": "flatten the document",
    "limit.json_size": "send less per request",
    "limit.json_number": "send very large numbers as strings",
    "limit.yaml_aliases": "write the repeated part out, or reuse it less",
}


class JsonBoundsError(SgflowError, ValueError):
    """A document refused; ``code`` is one of :data:`CODES`. ``pointer`` (also ``field``) is
    the JSON pointer of the offending value (``""`` the whole document, None when unknown),
    ``position`` its character offset when known, ``line`` (1-based) for YAML, ``limit`` for
    ``limit.*``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        pointer: str | None = "",
        position: int | None = None,
        line: int | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__(code, message, field=pointer, limit=limit, hint=_HINTS[code])
        self.position = position
        self.line = line

    @property
    def pointer(self) -> str | None:
        return self.field


def _escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _line_col(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    return f"line {line} column {position - (text.rfind(chr(10), 0, position) + 1) + 1}"


# -- depth ------------------------------------------------------------------------------------

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|"|[\[\]{},:]')


def _check_depth(text: str, max_depth: int) -> None:
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot nest deeper than it has openings
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if max(itertools.accumulate(_STEP[c] for c in brackets), default=0) <= max_depth:
        return
    found = _locate_depth(text, max_depth)
    if found is None:
        return  # brackets inside a broken string: json.loads reports the syntax error first
    pointer, position = found
    raise JsonBoundsError(
        "limit.json_depth",
        f"arrays/objects nest deeper than {max_depth} levels at {_line_col(text, position)}",
        pointer=pointer,
        position=position,
        limit=max_depth,
    )


def _locate_depth(text: str, max_depth: int) -> tuple[str, int] | None:
    """The pointer and offset of the first bracket past ``max_depth``, by a token walk that
    keeps the path (array indexes, object keys); None when a string is left open first."""
    path: list[list[Any]] = []  # [kind, index or key, expecting a key]
    for m in _TOKEN.finditer(text):
        token = m.group()
        if token in "[{":
            if len(path) == max_depth:
                return "".join(f"/{_escape(frame[1])}" for frame in path), m.start()
            path.append(["a", 0, False] if token == "[" else ["o", "", True])
        elif token in "]}":
            if path:
                path.pop()
        elif token == ",":
            if path and path[-1][0] == "a":
                path[-1][1] += 1
            elif path:
                path[-1][2] = True
        elif token == ":":
            if path:
                path[-1][2] = False
        elif token == '"':
            return None
        elif path and path[-1][0] == "o" and path[-1][2]:
            path[-1][1] = json.loads(token) if "\\" in token else token[1:-1]
    return None


# -- values -----------------------------------------------------------------------------------


class _Bad:
    """What a parser hook returns in place of a refused value; found afterwards, in document
    order, to report its pointer (the hooks cannot know where they are)."""

    def __init__(
        self, code: str, message: str, suffix: str | None = None, limit: int | None = None
    ) -> None:
        self.code = code
        self.message = message
        self.suffix = suffix
        self.limit = limit


class _Hooks:
    def __init__(self, max_int_digits: int) -> None:
        self.max_int_digits = max_int_digits
        self.flagged = False

    def bad(self, *args: Any, **kwargs: Any) -> _Bad:
        self.flagged = True
        return _Bad(*args, **kwargs)

    def object(self, pairs: list[tuple[str, Any]]) -> Any:
        result = dict(pairs)
        if len(result) == len(pairs):
            return result
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                return self.bad("json.duplicate_key", f"the key {key!r} appears twice", key)
            seen.add(key)
        return result  # unreachable: a shorter dict means a repeated key

    def integer(self, literal: str) -> Any:
        digits = len(literal) - literal.startswith("-")
        if digits > self.max_int_digits:
            return self.bad(
                "limit.json_number",
                f"an integer literal of {digits} digits ({literal[:12]}…); the limit is "
                f"{self.max_int_digits}",
                limit=self.max_int_digits,
            )
        return int(literal)

    def number(self, literal: str) -> Any:
        value = float(literal)
        if math.isfinite(value):
            return value
        return self.bad("json.non_finite", f"{literal[:24]} is too large for a number")

    def constant(self, literal: str) -> Any:
        return self.bad("json.non_finite", f"{literal} is not a JSON number")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _may_hold_surrogates(text: str) -> bool:
    """A cheap test before the walk: an escape that may be half a pair, or a raw surrogate
    (possible in a ``str`` that did not come from decoding UTF-8, e.g. argv)."""
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        return True
    return not text.isascii() and _SURROGATE.search(text) is not None


def _first_problem(value: Any) -> JsonBoundsError | None:
    """The first refused value (a :class:`_Bad`) or lone surrogate, in document order."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, pointer = stack.pop()
        if isinstance(item, _Bad):
            at = pointer if item.suffix is None else f"{pointer}/{_escape(item.suffix)}"
            return JsonBoundsError(item.code, item.message, pointer=at, limit=item.limit)
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found is not None:
                return JsonBoundsError(
                    "json.lone_surrogate",
                    f"the string holds a lone surrogate U+{ord(found.group()):04X}",
                    pointer=pointer,
                )
        elif isinstance(item, dict):
            children = []
            for key, sub in item.items():
                at = f"{pointer}/{_escape(key)}"
                if _SURROGATE.search(key):
                    return JsonBoundsError(
                        "json.lone_surrogate", "the key holds a lone surrogate", pointer=at
                    )
                children.append((sub, at))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(sub, f"{pointer}/{i}") for i, sub in enumerate(item)]))
    return None


def loads(
    text: str | bytes,
    *,
    max_depth: int = MAX_DEPTH,
    max_size: int | None = MAX_SIZE,
    max_int_digits: int = MAX_INT_DIGITS,
) -> Any:
    """The JSON value of ``text`` (``str``, or UTF-8 ``bytes``), within the bounds.

    Defaults: ``max_depth`` :data:`MAX_DEPTH`, ``max_size`` :data:`MAX_SIZE` (None: no
    limit), ``max_int_digits`` :data:`MAX_INT_DIGITS`. Raises :class:`JsonBoundsError`
    (a ``ValueError``) with one of :data:`CODES`; never ``RecursionError``.
    """
    if max_size is not None and len(text) > max_size:
        raise JsonBoundsError(
            "limit.json_size",
            f"the document is {len(text)} {'bytes' if isinstance(text, bytes) else 'characters'}"
            f"; the limit is {max_size}",
            limit=max_size,
        )
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonBoundsError(
                "request.malformed_json", f"not UTF-8 (byte {exc.start})", position=exc.start
            ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    _check_depth(text, max_depth)
    hooks = _Hooks(max_int_digits)
    try:
        value = json.loads(
            text,
            object_pairs_hook=hooks.object,
            parse_int=hooks.integer,
            parse_float=hooks.number,
            parse_constant=hooks.constant,
        )
    except json.JSONDecodeError as exc:
        raise JsonBoundsError(
            "request.malformed_json",
            f"{exc.msg} at line {exc.lineno} column {exc.colno}",
            position=exc.pos,
        ) from None
    except RecursionError:  # unreachable after _check_depth; never let it escape
        raise JsonBoundsError(
            "limit.json_depth", f"nests deeper than {max_depth} levels", limit=max_depth
        ) from None
    if hooks.flagged or _may_hold_surrogates(text):
        problem = _first_problem(value)
        if problem is not None:
            raise problem
    return value


# -- YAML -------------------------------------------------------------------------------------

# libyaml parses in linear time; PyYAML's pure-Python scanner is quadratic in flow nesting
# (1000 nested "[" take about a second, 8000 twenty), so a hostile source would stall it
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_error(code: str, message: str, mark: Any, limit: int | None = None) -> JsonBoundsError:
    line = mark.line + 1 if mark is not None else None
    where = f" (line {line})" if line is not None else ""
    return JsonBoundsError(code, message + where, pointer=None, line=line, limit=limit)


def _check_yaml_events(text: str, max_depth: int, max_nodes: int) -> None:
    """Walk the parser's events (no tree is built yet): nesting, and the size and height each
    alias expands to, so that an alias bomb is refused before it is expanded."""
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, height) once complete
    open_anchors: set[str] = set()
    stack: list[list[Any]] = [[None, 0, 0]]  # [anchor, nodes so far, height of the deepest child]
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) > max_depth:
                raise _yaml_error(
                    "limit.json_depth",
                    f"the document nests deeper than {max_depth} levels",
                    event.start_mark,
                    max_depth,
                )
            if event.anchor is not None:
                open_anchors.add(event.anchor)
            stack.append([event.anchor, 1, 0])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, nodes, height = stack.pop()
            size = (nodes, height + 1)
            if anchor is not None:
                open_anchors.discard(anchor)
                anchors[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            size = (1, 0)
            if event.anchor is not None:
                anchors[event.anchor] = size
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise _yaml_error(
                    "limit.yaml_aliases",
                    f"the alias *{event.anchor} refers to the node that contains it",
                    event.start_mark,
                )
            size = anchors.get(event.anchor or "", (1, 0))  # undefined: the composer reports it
            if len(stack) - 1 + size[1] > max_depth:
                raise _yaml_error(
                    "limit.json_depth",
                    f"the alias *{event.anchor} nests the document deeper than {max_depth} levels",
                    event.start_mark,
                    max_depth,
                )
        else:
            continue
        parent = stack[-1]
        parent[1] += size[0]
        parent[2] = max(parent[2], size[1])
        if parent[1] > max_nodes:
            raise _yaml_error(
                "limit.yaml_aliases",
                f"the document expands to more than {max_nodes} nodes",
                event.start_mark,
                max_nodes,
            )


def _check_duplicate_keys(node: yaml.Node) -> None:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, yaml.MappingNode):
            seen: set[Any] = set()
            for key, value in item.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in seen:
                        raise _yaml_error(
                            "json.duplicate_key",
                            f"the key {key.value!r} appears twice",
                            key.start_mark,
                        )
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(item, yaml.SequenceNode):
            stack.extend(item.value)


def load_yaml(
    text: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_YAML_NODES
) -> tuple[Any, yaml.Node | None]:
    """The JSON value of a YAML (or JSON) document and its node tree (for line numbers).

    Bounded like :func:`loads` (the value goes through it, so ``.nan``, huge integers and
    lone surrogates are refused with the same codes), plus ``limit.yaml_aliases``.
    Defaults: ``max_depth`` :data:`MAX_DEPTH`, ``max_nodes`` :data:`MAX_YAML_NODES`. YAML-only
    types (dates) become strings. Raises :class:`JsonBoundsError` (``pointer`` None,
    ``line`` set when known) and ``yaml.YAMLError`` for a syntax error.
    """
    _check_yaml_events(text, max_depth, max_nodes)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_duplicate_keys(node)
        try:
            data = loader.construct_document(node)
        except ValueError:  # int("9" * 5000): over Python's own limit of 4300 digits
            raise _yaml_error(
                "limit.json_number", "an integer has more than 4300 digits", node.start_mark
            ) from None
    finally:
        loader.dispose()
    as_json = json.dumps(data, default=str)  # NaN and lone surrogates are refused by loads
    try:
        return loads(as_json, max_depth=max_depth, max_size=None), node
    except JsonBoundsError as exc:
        exc.line = _line_of(node, exc.pointer or "")
        raise


def _line_of(node: yaml.Node, pointer: str) -> int:
    """The line (1-based) of the node at ``pointer``, or of its deepest ancestor found."""
    for token in pointer.split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [v for k, v in node.value if getattr(k, "value", None) == key]
        elif isinstance(node, yaml.SequenceNode) and key.isdigit() and int(key) < len(node.value):
            children = [node.value[int(key)]]
        if not children:
            break
        node = children[-1]
    return int(node.start_mark.line) + 1
