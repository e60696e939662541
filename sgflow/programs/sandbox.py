"""The Jinja sandbox user templates run in, bounded in what one operation can build and in time.

jinja2's ``ImmutableSandboxedEnvironment`` stops attribute escapes (``__class__``, ``__globals__``)
and mutation, but not resources: ``{{ 'a' * 10**9 }}`` allocates a gigabyte (and jinja folds
such constants while *compiling*, so merely checking the template froze the process for 20 s),
``{{ 9**9**9 }}`` computes forever in C, ``{{ x|center(10**9) }}``, ``'%999999999d'|format(1)``,
``s.ljust(10**9)`` and ``l|join(big)`` build gigabytes, and two nested ``for`` loops over
``range(100000)`` that print nothing never reach the render loop's time check. So here:

- **operations are bounded by what they would build**: ``*``, ``+``, ``**``, ``%`` and ``~`` are
  intercepted and refused when the result would exceed :data:`MAX_BUILD` characters or items (or
  :data:`MAX_INT_BITS` bits); filters that grow text take bounded arguments (:data:`MAX_WIDTH`);
  ``str`` methods are an allowlist (no ``ljust``/``zfill``/``format``/``replace``…: the bounded
  filters do those jobs);
- **globals** are only ``range`` (jinja's sandbox caps it at 100,000 items); no ``lipsum``,
  ``cycler``, ``joiner``, ``namespace``, ``dict``;
- **tags that capture output or load other templates are refused** (:data:`FORBIDDEN_TAGS`:
  ``macro``, ``call``, ``filter`` blocks, ``set`` blocks, ``include``, ``import``, ``extends``,
  ``block``): the checker reports them before a program is stored, and compiling refuses them too;
- **time**: :func:`bounded` runs rendering under a line tracer that raises past a deadline, so a
  loop is stopped even when it prints nothing.

Every refusal is :class:`SandboxLimit` (a ``limit``) or jinja's ``SecurityError``.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, TypeVar

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "FORBIDDEN_TAGS",
    "MAX_BUILD",
    "MAX_INT_BITS",
    "MAX_WIDTH",
    "SandboxLimit",
    "bounded",
    "environment",
    "forbidden_nodes",
]

MAX_BUILD = 200_000  # characters or items one operation may produce (= RenderLimits.max_chars)
MAX_INT_BITS = 4096  # bits of an integer an operation may produce
MAX_WIDTH = 1_000  # widths, indents and batch sizes filters take

T = TypeVar("T")

FORBIDDEN_TAGS: dict[type[nodes.Node], str] = {
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
    nodes.FilterBlock: "filter",
    nodes.AssignBlock: "set … endset",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from … import",
    nodes.Extends: "extends",
    nodes.Block: "block",
}

_STR_METHODS = frozenset(
    [
        "capitalize",
        "casefold",
        "count",
        "endswith",
        "find",
        "index",
        "isalnum",
        "isalpha",
        "isascii",
        "isdecimal",
        "isdigit",
        "islower",
        "isnumeric",
        "isspace",
        "istitle",
        "isupper",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "rfind",
        "rindex",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
    ]
)
_SEQ_METHODS = frozenset({"count", "index"})
_DICT_METHODS = frozenset({"get", "keys", "values", "items"})
_FORMAT_SPEC = re.compile(r"%[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


class SandboxLimit(Exception):
    """An operation would build more than the sandbox allows, or rendering ran too long."""


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


def _check_size(size: int, what: str) -> None:
    if size > MAX_BUILD:
        raise SandboxLimit(
            f"{what} would build {size} characters or items; the limit is {MAX_BUILD}"
        )


def _check_format(fmt: str) -> None:
    """``%``-formatting widths and precisions are bounded (``'%999999999d'`` pads a gigabyte)."""
    for width, precision in _FORMAT_SPEC.findall(fmt):
        for part in (width, precision):
            if part == "*" or (part and int(part) > MAX_WIDTH):
                raise SandboxLimit(
                    f"a format width or precision over {MAX_WIDTH} (in {fmt[:40]!r})"
                )


def _check_width(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIDTH:
        raise SandboxLimit(f"{what} {value} is over {MAX_WIDTH}")
    if isinstance(value, str) and len(value) > MAX_WIDTH:
        raise SandboxLimit(f"{what} is longer than {MAX_WIDTH} characters")


def _binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            size = _size(seq)
            if size is not None and isinstance(n, int):
                _check_size(size * max(n, 0), "repeating a sequence")
        ints = isinstance(left, int) and isinstance(right, int)
        if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SandboxLimit(f"a product over {MAX_INT_BITS} bits")
    elif operator == "**":
        ints = isinstance(left, int) and isinstance(right, int) and right > 0
        if ints and right * max(left.bit_length(), 1) > MAX_INT_BITS:
            raise SandboxLimit(f"a power over {MAX_INT_BITS} bits")
    elif operator == "+":
        a, b = _size(left), _size(right)
        if a is not None and b is not None:
            _check_size(a + b, "concatenating")
    elif operator == "%" and isinstance(left, str):
        _check_format(left)


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox; see the module docstring."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # ``x.items`` means the key "items" of user data, not ``dict.items``: user JSON has keys
        # named items, keys, values, and jinja would otherwise hand back the bound method
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def wrap_str_format(self, value: Any) -> None:
        # jinja hands out a sandboxed ``str.format`` before asking is_safe_attribute; padding
        # in a format spec is unbounded, so ``format``/``format_map`` go through the allowlist
        # (which refuses them) like every other str method
        return None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(obj, str):
            return attr in _STR_METHODS
        if isinstance(obj, list | tuple):
            return attr in _SEQ_METHODS
        if isinstance(obj, dict):
            return attr in _DICT_METHODS
        return not isinstance(obj, int | float | bool)  # numbers: no methods needed

    def concat(self, parts: Iterable[Any]) -> str:
        """``a ~ b``: joined only while the result stays within :data:`MAX_BUILD`."""
        texts = [str(p) for p in parts]
        _check_size(sum(len(t) for t in texts), "`~`")
        return "".join(texts)


class _CodeGenerator(CodeGenerator):
    """jinja's code generator with ``~`` routed through :meth:`_Environment.concat` and
    the output-capturing and template-loading tags refused."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        bad = forbidden_nodes(node)
        if bad:
            raise jinja2.TemplateSyntaxError(f"`{bad[0][1]}` is not allowed", bad[0][0], None, None)
        super().visit_Template(node, frame)


def forbidden_nodes(tree: nodes.Node) -> list[tuple[int, str]]:
    """``(line, tag)`` of every tag of :data:`FORBIDDEN_TAGS` in ``tree``."""
    found = [(n.lineno, FORBIDDEN_TAGS[type(n)]) for n in tree.find_all(tuple(FORBIDDEN_TAGS))]
    return sorted(found)


# -- filters: the safe ones as they are, the ones that grow text with bounded arguments ----------


def _center(value: Any, width: int = 80) -> str:
    _check_width(width, "center width")
    return str(jinja2.filters.do_center(str(value), width))


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    _check_width(width, "indent")
    text = str(s)
    pad = width if isinstance(width, int) else len(width)
    _check_size(len(text) + pad * (text.count("\n") + 1), "indent")
    return str(jinja2.filters.do_indent(text, width, first, blank))


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_format(str(value))
    return str(jinja2.filters.do_format(str(value), *args, **kwargs))


def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if attribute is None:
        size = sum(len(str(x)) for x in items) + len(str(d)) * max(len(items) - 1, 0)
        _check_size(size, "join")
    result = jinja2.filters.do_join(eval_ctx, items, d, attribute)
    _check_size(len(result), "join")
    return str(result)


def _replace(eval_ctx: Any, s: Any, old: str, new: str, count: int | None = None) -> str:
    text, old, new = str(s), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    _check_size(len(text) + hits * max(len(new) - len(old), 0), "replace")
    return str(jinja2.filters.do_replace(eval_ctx, text, old, new, count))


def _batch(value: Iterable[T], linecount: int, fill_with: T | None = None) -> Any:
    _check_width(linecount, "batch size")
    return jinja2.filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    _check_width(slices, "slices")
    return jinja2.filters.do_slice(value, slices, fill_with)


def _wordwrap(s: Any, width: int = 79, *args: Any, **kwargs: Any) -> str:
    if not isinstance(width, int) or width < 1:
        raise SandboxLimit("wordwrap width must be a positive integer")
    for arg in (*args, *kwargs.values()):
        _check_width(arg, "wordwrap argument")
    return str(jinja2.filters.do_wordwrap(_ENV, str(s), width, *args, **kwargs))


def _sum(iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    if not isinstance(start, int | float):
        raise SandboxLimit("sum adds numbers only")
    return jinja2.filters.do_sum(_ENV, iterable, attribute, start)


_KEEP = [
    "abs",
    "attr",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "filesizeformat",
    "first",
    "float",
    "forceescape",
    "groupby",
    "int",
    "items",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "sort",
    "string",
    "striptags",
    "title",
    "tojson",
    "trim",
    "truncate",
    "unique",
    "upper",
    "urlencode",
    "urlize",
    "wordcount",
    "xmlattr",
]

_BOUNDED: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "format": _format,
    "join": jinja2.pass_eval_context(_join),
    "replace": jinja2.pass_eval_context(_replace),
    "batch": _batch,
    "slice": _slice,
    "wordwrap": _wordwrap,
    "sum": _sum,
}


def _make() -> _Environment:
    env = _Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        optimized=False,  # never evaluate user constants while compiling
    )
    env.code_generator_class = _CodeGenerator
    env.filters = {name: env.filters[name] for name in _KEEP} | _BOUNDED
    env.globals = {"range": env.globals["range"]}
    return env


_ENV = _make()


def environment() -> jinja2.Environment:
    """The one sandboxed environment every template and expression is parsed and run in."""
    return _ENV


def bounded(fn: Callable[[], T], max_seconds: float) -> T:
    """``fn()`` with a deadline: a line tracer on this thread raises :class:`SandboxLimit` at
    the first Python line executed past ``max_seconds`` (template code and the jinja runtime
    it calls are Python, so a loop that prints nothing is stopped too). A single C-level
    operation cannot be interrupted; those are bounded by size instead. Restores any tracer
    that was set (a debugger, coverage) afterwards."""
    deadline = time.monotonic() + max_seconds
    previous = sys.gettrace()
    ticks = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal ticks
        ticks += 1
        if ticks % 256 == 0 and time.monotonic() > deadline:
            raise SandboxLimit(f"rendering took over {max_seconds:g}s")
        return tracer

    sys.settrace(tracer)
    try:
        return fn()
    finally:
        sys.settrace(previous)
