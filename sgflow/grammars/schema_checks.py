"""Static checks of a JSON Schema, before xgrammar sees it.

In order, each stage only if the previous ones passed (a schema over the size limit is
not walked further; an invalid schema is not compiled):

1. nesting, branching and size limits (``limit.schema_depth``, ``limit.schema_branches``,
   ``limit.schema_size``);
2. validity against its own meta-schema (``grammar.invalid_schema``, at the keyword);
3. ``enum`` sizes, ``pattern``/``patternProperties`` lengths and dialect, ``$ref``s;
4. keywords the enforcement report marks ``rejected`` (``grammar.unsupported``).

:func:`check_schema_static` is for schemas xgrammar enforces (a step's ``json_schema``,
``/v1/extract``); :func:`check_validation_schema` for those only validated (a program's
``inputs`` and ``output.schema``): stages 1 to 3 without the xgrammar-only ones. Patterns are
checked the same way in both, since RE2 evaluates both (:func:`pattern_errors`).
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema.exceptions import best_match

from sgflow.grammars.enforcement import explain
from sgflow.grammars.errors import GrammarError, escape_pointer
from sgflow.grammars.limits import Limits
from sgflow.grammars.regex_dialect import RegexIssue, scan
from sgflow.grammars.safe_regex import dialect_issues
from sgflow.grammars.schema_refs import check_refs
from sgflow.grammars.schema_walk import iter_nodes, json_depth
from sgflow.grammars.validation import meta_validator

__all__ = ["check_schema_static", "check_validation_schema", "pattern_errors", "regex_errors"]

# Raw JSON nesting (annotations, const values …) is capped at this multiple of the
# subschema depth limit, so no value can be deep enough to hit Python's recursion limit.
_RAW_DEPTH_FACTOR = 4
_MAX_META_ERRORS = 10
# Each branch of these becomes grammar rules (and a validation pass): bounded in number
_COMBINATORS = ("anyOf", "oneOf", "allOf")


def check_schema_static(schema: Any, limits: Limits) -> list[GrammarError]:
    """Every static problem of ``schema``; an empty list means xgrammar may compile it."""
    errors, walked = _validation_stages(schema, limits)
    if not walked:
        return errors
    errors.extend(check_refs(schema, allow_recursive=limits.allow_recursive_refs))
    seen = {e.pointer for e in errors}
    for row in explain(schema):
        if row.status == "rejected" and row.at not in seen:
            seen.add(row.at)
            message = f"{row.keyword}: {row.note}"
            errors.append(GrammarError("grammar.unsupported", row.at, message, row.hint))
    return sorted(errors, key=lambda e: e.pointer)  # reading order, whichever stage found it


def check_validation_schema(schema: Any, limits: Limits) -> list[GrammarError]:
    """Every problem of a schema that only validates values (never compiled by xgrammar):
    not an object, over the size and depth limits, invalid against its meta-schema, an
    ``enum`` over the limit, or a pattern RE2 and xgrammar would not read alike."""
    return _validation_stages(schema, limits)[0]


def _validation_stages(schema: Any, limits: Limits) -> tuple[list[GrammarError], bool]:
    """Stages 1 to 3 (see the module docstring), and whether the schema was walked (the
    later stages only make sense then)."""
    if not isinstance(schema, dict):
        return [
            GrammarError(
                "grammar.invalid_schema",
                "",
                f"a JSON Schema must be an object here, not {type(schema).__name__}",
                'wrap it: {"type": ...}',
            )
        ], False
    errors = _size_and_depth(schema, limits) or _meta_schema(schema)
    if errors:
        return errors, False
    for node in iter_nodes(schema):
        if isinstance(node.schema, dict):
            errors.extend(_node_limits(node.schema, node.pointer, node.depth, limits))
    return errors, True


def _size_and_depth(schema: dict[str, Any], limits: Limits) -> list[GrammarError]:
    raw_limit = limits.max_schema_depth * _RAW_DEPTH_FACTOR
    if json_depth(schema) > raw_limit:
        return [
            GrammarError(
                "limit.schema_depth",
                "",
                f"the schema nests objects/arrays more than {raw_limit} levels deep",
                "flatten it",
                limit=raw_limit,
            )
        ]
    for node in iter_nodes(schema):
        if isinstance(node.schema, dict):
            for key in _COMBINATORS:
                branches = node.schema.get(key)
                if isinstance(branches, list) and len(branches) > limits.max_schema_branches:
                    return [
                        GrammarError(
                            "limit.schema_branches",
                            f"{node.pointer}/{key}",
                            f"{key} has {len(branches)} subschemas; the limit is "
                            f"{limits.max_schema_branches}",
                            "use an enum for many constants, or merge similar branches",
                            limit=limits.max_schema_branches,
                        )
                    ]
        if node.depth > limits.max_schema_depth:
            return [
                GrammarError(
                    "limit.schema_depth",
                    node.pointer,
                    f"subschemas nest {node.depth} deep here; the limit is "
                    f"{limits.max_schema_depth}",
                    "flatten the schema, or move shared parts to $defs",
                    limit=limits.max_schema_depth,
                )
            ]
    size = len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > limits.max_schema_bytes:
        return [
            GrammarError(
                "limit.schema_size",
                "",
                f"the schema is {size} bytes; the limit is {limits.max_schema_bytes}",
                "remove descriptions and examples, or split the step in two",
                limit=limits.max_schema_bytes,
            )
        ]
    return []


def _meta_schema(schema: dict[str, Any]) -> list[GrammarError]:
    if "$schema" in schema and not isinstance(schema["$schema"], str):
        return [
            GrammarError(
                "grammar.invalid_schema",
                "/$schema",
                "$schema must be a URI string",
                "use https://json-schema.org/draft/2020-12/schema, or leave it out",
            )
        ]
    errors = []
    for error in meta_validator(schema).iter_errors(schema):
        # anyOf errors of the meta-schema hide the useful message one level down
        best = best_match(error.context) if error.context else error
        best = best or error
        pointer = "".join(f"/{escape_pointer(p)}" for p in best.absolute_path)
        errors.append(
            GrammarError(
                "grammar.invalid_schema",
                pointer,
                f"not a valid JSON Schema: {best.message}",
                "see https://json-schema.org/understanding-json-schema/ for the keyword",
            )
        )
        if len(errors) >= _MAX_META_ERRORS:
            break
    return sorted(errors, key=lambda e: e.pointer)


def _node_limits(
    node: dict[str, Any], pointer: str, depth: int, limits: Limits
) -> list[GrammarError]:
    errors = []
    for key in ("enum", "const"):
        if key in node and depth + json_depth(node[key]) > limits.max_schema_depth:
            errors.append(
                GrammarError(
                    "limit.schema_depth",
                    f"{pointer}/{key}",
                    f"the {key} value nests deeper than {limits.max_schema_depth} levels",
                    "flatten the value",
                    limit=limits.max_schema_depth,
                )
            )
    enum = node.get("enum")
    if isinstance(enum, list) and len(enum) > limits.max_enum_size:
        errors.append(
            GrammarError(
                "limit.enum_size",
                f"{pointer}/enum",
                f"enum has {len(enum)} values; the limit is {limits.max_enum_size}",
                "use a pattern, or a string with maxLength, and validate the value later",
                limit=limits.max_enum_size,
            )
        )
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        errors.extend(pattern_errors(pattern, f"{pointer}/pattern", limits))
    props = node.get("patternProperties")
    if isinstance(props, dict):
        for key in props:
            at = f"{pointer}/patternProperties/{escape_pointer(key)}"
            errors.extend(pattern_errors(key, at, limits))
    return errors


def regex_errors(pattern: str, pointer: str, limits: Limits) -> list[GrammarError]:
    """Size limit and xgrammar dialect problems of a regex constraint (``gen.regex``), which
    only xgrammar reads, reported at ``pointer``."""
    if len(pattern) > limits.max_regex_chars:
        return [
            GrammarError(
                "limit.regex_size",
                pointer,
                f"the regex is {len(pattern)} characters; the limit is {limits.max_regex_chars}",
                "shorten it, or use an EBNF grammar for large languages",
                limit=limits.max_regex_chars,
            )
        ]
    return [_from_issue(issue, pointer) for issue in scan(pattern)]


def pattern_errors(pattern: str, pointer: str, limits: Limits) -> list[GrammarError]:
    """Problems of a ``pattern`` or ``patternProperties`` key of a schema, reported at
    ``pointer``: those of :func:`regex_errors`, then (when there are none) what RE2 cannot
    evaluate as xgrammar reads it (``grammar.regex_dialect``, or ``grammar.invalid_regex``)."""
    errors = regex_errors(pattern, pointer, limits)
    if errors:
        return errors
    return [_from_issue(issue, pointer) for issue in dialect_issues(pattern)]


def _from_issue(issue: RegexIssue, pointer: str) -> GrammarError:
    message = f"{issue.message} (at character {issue.position})"
    return GrammarError(issue.code, pointer, message, issue.hint)
