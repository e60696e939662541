"""User templates and expressions, in a bounded jinja2 sandbox (:mod:`sgflow.programs.sandbox`).

Templates see ``inputs``, ``steps`` (outputs of earlier steps) and fork variables. Undefined
names fail (``StrictUndefined``); rendering is capped in output size and time (a line tracer
stops loops that print nothing); one operation cannot build more than the sandbox's limit; the
sandbox forbids attribute access to internals and mutation, and the tags that capture output or
load templates. Not outlines' templates: they are not sandboxed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes

from sgflow.programs.sandbox import SandboxLimit, bounded, environment, forbidden_nodes

__all__ = [
    "RenderLimits",
    "TemplateFailure",
    "evaluate",
    "parse_expression",
    "parse_template",
    "references",
    "render",
    "render_value",
]


_env = environment()
_WHOLE_EXPR = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)


@dataclass(frozen=True)
class RenderLimits:
    max_chars: int = 200_000
    max_seconds: float = 1.0


_CODES = {
    "syntax": "template.syntax",
    "forbidden": "template.forbidden",
    "undefined": "template.undefined",
    "limit": "template.limit",
    "error": "template.error",
}


class TemplateFailure(Exception):
    """A template that does not parse or render; ``kind`` is
    syntax|forbidden|undefined|limit|error,
    ``code`` the registered error code for it (``template.<kind>``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = _CODES[kind]
        self.message = message


def parse_template(source: str) -> nodes.Template:
    """The template's syntax tree; raises :class:`TemplateFailure` ``syntax`` for a template
    that does not parse or uses a tag the sandbox refuses (``macro``, ``include``…)."""
    try:
        tree = _env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateFailure("syntax", f"line {exc.lineno}: {exc.message}") from None
    bad = forbidden_nodes(tree)
    if bad:
        line, tag = bad[0]
        raise TemplateFailure(
            "forbidden", f"line {line}: `{tag}` is not allowed in sgflow templates"
        )
    for line, name in private_names(tree):
        raise TemplateFailure(
            "forbidden", f"line {line}: `{name}` is private: templates read data, not internals"
        )
    return tree


def private_names(tree: nodes.Template) -> list[tuple[int, str]]:
    """``(line, name)`` of every attribute or constant key starting with ``_`` that the
    template reads (``x.__class__``, ``x['_y']``, ``x|attr('__globals__')``): the sandbox
    refuses them when rendering, this finds them before a program is stored."""
    found: list[tuple[int, str]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name: Any = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            arg = node.args[0]
            name = arg.value if isinstance(arg, nodes.Const) else None
        if isinstance(name, str) and name.startswith("_"):
            found.append((node.lineno, name))
    return sorted(found)


def parse_expression(source: str) -> nodes.Template:
    return parse_template("{{ " + source + " }}")


def references(tree: nodes.Template) -> tuple[set[str], set[str]]:
    """``(free names, step ids)`` a template uses; step ids from ``steps.x`` / ``steps['x']``."""
    from jinja2 import meta

    free = set(meta.find_undeclared_variables(tree))
    step_ids: set[str] = set()
    for attr in tree.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == "steps":
            step_ids.add(attr.attr)
    for item in tree.find_all(nodes.Getitem):
        is_steps = isinstance(item.node, nodes.Name) and item.node.name == "steps"
        if is_steps and isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
            step_ids.add(item.arg.value)
    return free, step_ids


def render(source: str, context: dict[str, Any], limits: RenderLimits | None = None) -> str:
    limits = limits or RenderLimits()
    template = _compile(source)
    started = time.monotonic()
    out: list[str] = []
    size = 0

    def generate() -> None:
        nonlocal size
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > limits.max_chars:
                raise TemplateFailure(
                    "limit", f"the rendered text exceeds {limits.max_chars} characters"
                )
            if time.monotonic() - started > limits.max_seconds:
                raise TemplateFailure("limit", f"rendering took over {limits.max_seconds:g}s")
            out.append(chunk)

    try:
        bounded(generate, limits.max_seconds)
    except SandboxLimit as exc:
        raise TemplateFailure("limit", str(exc)) from None
    except jinja2.UndefinedError as exc:
        raise TemplateFailure("undefined", str(exc.message)) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateFailure("error", f"forbidden by the sandbox: {exc}") from None
    except TemplateFailure:
        raise
    except Exception as exc:
        raise TemplateFailure("error", f"{type(exc).__name__}: {exc}") from None
    return "".join(out)


def evaluate(expression: str, context: dict[str, Any], limits: RenderLimits | None = None) -> Any:
    """The value of a Jinja expression, under the same bounds as :func:`render`."""
    limits = limits or RenderLimits()
    try:
        compiled = _env.compile_expression(expression, undefined_to_none=False)
        return bounded(lambda: compiled(**context), limits.max_seconds)
    except SandboxLimit as exc:
        raise TemplateFailure("limit", str(exc)) from None
    except jinja2.UndefinedError as exc:
        raise TemplateFailure("undefined", str(exc.message)) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateFailure("syntax", exc.message or "syntax error") from None
    except Exception as exc:
        raise TemplateFailure("error", f"{type(exc).__name__}: {exc}") from None


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render a structure: a string that is exactly ``{{ expr }}`` keeps the value's type."""
    if isinstance(value, str):
        whole = _WHOLE_EXPR.match(value)
        if whole and "{{" not in whole.group(1):
            return evaluate(whole.group(1).strip(), context)
        return render(value, context)
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


def template_strings(value: Any, pointer: str = "") -> Iterable[tuple[str, str]]:
    """Every string inside a structure, with its JSON pointer."""
    if isinstance(value, str):
        yield pointer, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from template_strings(v, f"{pointer}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from template_strings(v, f"{pointer}/{i}")


_cache: dict[str, jinja2.Template] = {}


def _compile(source: str) -> jinja2.Template:
    template = _cache.get(source)
    if template is None:
        try:
            template = _env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateFailure("syntax", f"line {exc.lineno}: {exc.message}") from None
        if len(_cache) > 512:
            _cache.clear()
        _cache[source] = template
    return template
