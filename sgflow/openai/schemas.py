"""The constraints of an OpenAI request: checked schemas, the tool-call schema, who enforces what.

- A response format or a tool's parameters sent with ``strict: true`` must be inside OpenAI's
  strict subset (:mod:`sgflow.openai.strict`); then, strict or not, sgflow's own checker
  (:func:`sgflow.grammars.check`) must be able to enforce it. Either refusal is a 400 naming
  the schema's place in the request.
- Tool calls are generated under one JSON Schema (:func:`calls_schema`): an object
  ``{"name": <const>, "arguments": <the tool's parameters>}`` per allowed tool (``anyOf``
  when several), or an array of them for parallel calls. Each tool's parameters sit under
  ``$defs`` with their local ``$ref``\\ s re-pointed, so ``#`` and ``#/$defs/x`` inside a
  tool still mean what they meant in the tool. Arguments are therefore always valid.
- :class:`Checked` says which keywords the grammar does not enforce while decoding
  (``validated`` by :func:`sgflow.grammars.explain`): those are checked by ``jsonschema``
  after generation, and an answer using them is retried, so it cannot be streamed as it is
  generated (:mod:`sgflow.openai.plan`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from sgflow.errors import SgflowError, escape_pointer
from sgflow.grammars import check, explain
from sgflow.grammars.spec import JsonSchema
from sgflow.openai.conversation import OutputFormat, Tool
from sgflow.openai.strict import check_strict, normalize_strict, strict_error

__all__ = [
    "Checked",
    "ValidatedKeyword",
    "calls_schema",
    "check_calls",
    "check_format",
    "check_schema",
    "check_tool",
]

ANY_OBJECT: dict[str, Any] = {"type": "object"}
NO_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {},
    "required": [],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class ValidatedKeyword:
    """A keyword the grammar does not enforce while decoding: ``param`` (OpenAI's name of
    the schema), ``pointer`` into that schema, the ``keyword`` and why."""

    param: str
    pointer: str
    keyword: str
    note: str

    def to_dict(self) -> dict[str, str]:
        return {
            "param": self.param,
            "pointer": self.pointer,
            "keyword": self.keyword,
            "note": self.note,
        }


@dataclass(frozen=True)
class Checked:
    """A schema ready to constrain with, and its keywords validated only afterwards."""

    schema: dict[str, Any]
    validated: tuple[ValidatedKeyword, ...]


def check_schema(schema: dict[str, Any], *, field: str, param: str, what: str) -> None:
    """Refuse ``schema`` (at ``field`` in the request, OpenAI's ``param``) if sgflow's
    checker cannot enforce it: the first problem as :class:`SgflowError`, all in
    ``errors``."""
    problems = check(JsonSchema(schema))
    if problems:
        first = problems[0]
        raise SgflowError(
            first.code,
            f"{what}: {first.message}",
            field=field + first.pointer,
            limit=first.limit,
            hint=first.hint,
            extra={
                "param": param,
                "errors": [dict(p.to_dict(), field=field + p.pointer) for p in problems],
            },
        )


def _validated(schema: dict[str, Any], param: str) -> tuple[ValidatedKeyword, ...]:
    return tuple(
        ValidatedKeyword(param, r.pointer, r.keyword, r.note)
        for r in explain(schema)
        if r.status == "validated"
    )


def check_format(fmt: OutputFormat) -> Checked | None:
    """The schema a worded answer is generated under (None for ``text``). Raises
    :class:`SgflowError`: ``openai.invalid_json_schema`` for a strict schema outside the
    subset, ``grammar.*`` for one sgflow cannot enforce, ``request.invalid`` for none."""
    if fmt.kind == "text":
        return None
    if fmt.kind == "json_object":
        return Checked(dict(ANY_OBJECT), ())
    schema = fmt.schema
    if schema is None:
        raise SgflowError(
            "request.invalid",
            "a json_schema response format needs a `schema`",
            field=fmt.field,
            extra={"param": fmt.param},
        )
    if fmt.strict:
        problems = check_strict(schema)
        if problems:
            raise strict_error(
                problems, what=f"response_format '{fmt.name}'", field=fmt.field, param=fmt.param
            )
        schema = normalize_strict(schema)
    check_schema(schema, field=fmt.field, param=fmt.param, what=f"response_format '{fmt.name}'")
    return Checked(schema, _validated(schema, fmt.param))


def check_tool(tool: Tool) -> Checked:
    """A tool's parameters, checked as :func:`check_format` checks a schema (OpenAI's code
    for a strict tool outside the subset is ``invalid_function_parameters``)."""
    schema = tool.parameters
    if tool.strict:
        problems = check_strict(schema)
        if problems:
            raise strict_error(
                problems,
                what=f"function '{tool.name}'",
                field=tool.field,
                param=tool.param,
                openai_code="invalid_function_parameters",
            )
        schema = normalize_strict(schema)
    check_schema(schema, field=tool.field, param=tool.param, what=f"function '{tool.name}'")
    return Checked(schema, _validated(schema, tool.param))


def _repoint(schema: Any, base: str) -> Any:
    """``schema`` moved to ``base`` (a pointer such as ``/$defs/f0``): every local ``$ref``
    (``#`` or ``#/…``) is rewritten to point into the moved copy."""
    if isinstance(schema, list):
        return [_repoint(v, base) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str) and (value == "#" or value.startswith("#/")):
            out[key] = "#" + base + value[1:]
        elif key in ("enum", "const", "default", "examples"):
            out[key] = copy.deepcopy(value)
        else:
            out[key] = _repoint(value, base)
    return out


def calls_schema(
    tools: list[tuple[Tool, Checked]],
    *,
    parallel: bool,
    max_calls: int | None = None,
) -> dict[str, Any]:
    """The JSON Schema of an assistant's function call(s) to one of ``tools`` (each with
    its checked parameters): one call object, or with ``parallel`` an array of 1 to
    ``max_calls`` (default unbounded) of them."""
    defs: dict[str, Any] = {}
    variants = []
    for i, (tool, checked) in enumerate(tools):
        name = f"f{i}"
        params = {k: v for k, v in checked.schema.items() if k not in ("$schema", "$id")}
        defs[name] = _repoint(params, f"/$defs/{escape_pointer(name)}")
        variants.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": tool.name},
                    "arguments": {"$ref": f"#/$defs/{name}"},
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    call: dict[str, Any] = variants[0] if len(variants) == 1 else {"anyOf": variants}
    if not parallel:
        return {"$defs": defs, **call}
    array: dict[str, Any] = {"$defs": defs, "type": "array", "items": call, "minItems": 1}
    if max_calls is not None:
        array["maxItems"] = max_calls
    return array


def check_calls(schema: dict[str, Any], tools: list[tuple[Tool, Checked]]) -> None:
    """Refuse a :func:`calls_schema` sgflow cannot enforce (each tool passed alone, but
    together they may pass a size limit): the error points into the tool it is about."""
    problems = check(JsonSchema(schema))
    if not problems:
        return
    first = problems[0]
    field, param, what = "/tools", "tools", "the tools together"
    match = re.match(r"^/\$defs/f(\d+)(/.*)?$", first.pointer)
    if match and int(match.group(1)) < len(tools):
        tool = tools[int(match.group(1))][0]
        field, param, what = (
            tool.field + (match.group(2) or ""),
            tool.param,
            f"function '{tool.name}'",
        )
    raise SgflowError(
        first.code,
        f"{what}: {first.message}",
        field=field,
        limit=first.limit,
        hint=first.hint,
        extra={"param": param},
    )
