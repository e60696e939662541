"""The static checker: everything that can be known about a program before it runs.

``check_source`` returns every problem found (not only the first), each a
:class:`ProgramError` with a stable code, the JSON pointer, the line in the file, what is
wrong and how to fix it. ``load_program`` returns a checked program or raises
:class:`ProgramInvalid`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from sgflow.grammars import GrammarError, get_limits
from sgflow.grammars.schema_checks import check_validation_schema
from sgflow.grammars.schema_refs import check_refs
from sgflow.programs import constraints
from sgflow.programs.errors import ProgramError, ProgramInvalid
from sgflow.programs.loader import Source, SourceError, load_source, parse_source
from sgflow.programs.model import Fork, Program, Step
from sgflow.programs.templates import (
    TemplateFailure,
    parse_expression,
    parse_template,
    references,
    template_strings,
)

__all__ = ["ProgramLimits", "check_program", "check_source", "load_program", "parse_program"]

RESERVED_IDS = {"inputs", "steps", "loop", "item", "index", "range", "true", "false", "none"}


_TEMPLATE_HINTS = {
    "syntax": "fix the Jinja syntax",
    "forbidden": "templates may use expressions, `if`, `for` and `set x = …`, on `inputs` and "
    "`steps`; no macros, blocks, includes or private attributes",
}


@dataclass(frozen=True)
class ProgramLimits:
    """Limits on programs; defaults in the field values."""

    max_steps: int = 64
    max_tokens_per_step: int = 4096
    max_total_tokens: int = 32_768
    max_fork_width: int = 32
    max_fork_depth: int = 2
    max_choices: int = 256
    max_template_chars: int = 20_000


@dataclass
class _Scope:
    """What a template may name at a point of the program."""

    step_ids: set[str]
    later_ids: set[str]
    local_names: set[str] = field(default_factory=set)
    input_names: set[str] | None = None


class _Checker:
    def __init__(self, source: Source, limits: ProgramLimits) -> None:
        self.source = source
        self.limits = limits
        self.errors: list[ProgramError] = []

    def error(self, code: str, pointer: str, message: str, hint: str | None = "") -> None:
        self.errors.append(
            ProgramError(
                code=code,
                pointer=pointer,
                message=message,
                hint=hint,
                file=self.source.file,
                line=self.source.line_of(pointer),
            )
        )

    # -- structure --------------------------------------------------------------------------

    def model(self) -> Program | None:
        data = self.source.data
        if not isinstance(data, dict):
            self.error(
                "program.not_object",
                "",
                "a program must be a mapping with `program` and `steps`",
                "start the file with `program: my-name` and a `steps:` list",
            )
            return None
        try:
            return Program.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                pointer = "/" + "/".join(str(p) for p in err["loc"]) if err["loc"] else ""
                kind = err["type"]
                if kind == "extra_forbidden":
                    self.error(
                        "program.unknown_field",
                        pointer,
                        f"unknown field `{err['loc'][-1]}`",
                        "check the spelling against programs/program.schema.json",
                    )
                elif kind == "missing":
                    self.error(
                        "program.missing_field",
                        pointer,
                        f"`{err['loc'][-1]}` is required",
                        "add it",
                    )
                elif kind.endswith("_type") or kind in ("model_type", "dict_type", "list_type"):
                    self.error("program.wrong_type", pointer, err["msg"], "")
                else:
                    self.error("program.invalid_value", pointer, err["msg"], "")
            return None

    # -- whole program ----------------------------------------------------------------------

    def program(self, prog: Program) -> None:
        self.json_schema(prog.inputs, "/inputs", code="inputs.invalid_schema")
        input_names = _property_names(prog.inputs)
        all_ids = _all_step_ids(prog.steps)
        scope = _Scope(step_ids=set(), later_ids=set(all_ids), input_names=input_names)
        if prog.system:
            self.template(prog.system, "/system", scope)
        for i, msg in enumerate(prog.context):
            self.template(msg.content, f"/context/{i}/content", scope)
        count = _count_steps(prog.steps)
        if count > self.limits.max_steps:
            self.error(
                "limit.steps",
                "/steps",
                f"the program has {count} steps; the limit is {self.limits.max_steps}",
                "split it into several programs",
            )
        self.steps(prog.steps, "/steps", scope, fork_depth=0)
        total = _token_total(prog.steps, self.source.data)
        if total > self.limits.max_total_tokens:
            self.error(
                "limit.total_tokens",
                "/steps",
                f"the steps may generate up to {total} tokens (forks counted by width); "
                f"the limit is {self.limits.max_total_tokens}",
                "lower max_tokens or fork widths",
            )
        if total > prog.policy.token_budget:
            self.error(
                "limit.token_budget",
                "/policy/token_budget",
                f"the steps may generate up to {total} tokens but the run's token_budget "
                f"is {prog.policy.token_budget}",
                "raise policy.token_budget or lower max_tokens",
            )
        if prog.output is not None:
            out_scope = _Scope(step_ids=set(all_ids), later_ids=set(), input_names=input_names)
            for pointer, text in template_strings(prog.output.value, "/output/value"):
                self.template(text, pointer, out_scope)
            if prog.output.schema_ is not None:
                self.json_schema(
                    prog.output.schema_, "/output/schema", code="output.invalid_schema"
                )

    def steps(self, steps: list[Step], pointer: str, scope: _Scope, *, fork_depth: int) -> None:
        for i, step in enumerate(steps):
            p = f"{pointer}/{i}"
            self.step(step, p, scope, fork_depth=fork_depth)
            scope.step_ids.add(step.id)
            scope.later_ids.discard(step.id)

    def step(self, step: Step, p: str, scope: _Scope, *, fork_depth: int) -> None:
        if step.id in scope.step_ids:
            self.error(
                "step.duplicate_id",
                f"{p}/id",
                f"step id `{step.id}` is used twice",
                "step ids name outputs; make each unique",
            )
        if step.id in RESERVED_IDS or step.id in scope.local_names:
            self.error(
                "step.reserved_id",
                f"{p}/id",
                f"`{step.id}` is a reserved name",
                "choose another id",
            )
        actions = step.actions()
        if len(actions) > 1:
            self.error(
                "step.multiple_actions",
                p,
                f"a step does one thing; this one has {', '.join(actions)}",
                "split it into consecutive steps",
            )
        if not actions and not (step.system or step.user):
            self.error(
                "step.empty",
                p,
                "the step has no text and no action",
                "add `user:` text and a `gen:`, `select:` or `fork:`",
            )
        if step.think is not None and step.gen is None and step.select is None:
            self.error(
                "step.think_without_answer",
                f"{p}/think",
                "`think` lets the model reason before a constrained answer, but the step has none",
                "add a `gen:` or `select:` to the step",
            )
        if step.if_ is not None:
            self.expression(step.if_, f"{p}/if", scope, code="condition.syntax")
        for role in ("system", "user", "assistant"):
            text = getattr(step, role)
            if text is not None:
                self.template(text, f"{p}/{role}", scope)
        if step.gen is not None:
            self.gen(step, f"{p}/gen", scope)
        choices = step.select_choices()
        if choices is not None:
            self.choices(choices, f"{p}/select")
        if step.fork is not None:
            self.fork(step.fork, f"{p}/fork", scope, fork_depth=fork_depth)

    def fork(self, fork: Fork, p: str, scope: _Scope, *, fork_depth: int) -> None:
        if fork_depth + 1 > self.limits.max_fork_depth:
            self.error(
                "limit.fork_depth",
                p,
                f"forks nest {fork_depth + 1} deep; the limit is {self.limits.max_fork_depth}",
                "flatten the nested fork",
            )
        if fork.n is not None and fork.n > self.limits.max_fork_width:
            self.error(
                "limit.fork_width",
                f"{p}/n",
                f"the fork has {fork.n} branches; the limit is {self.limits.max_fork_width}",
                "lower n",
            )
        if fork.over is not None:
            self.expression(fork.over, f"{p}/over", scope, code="fork.over_syntax")
        inner = _Scope(
            step_ids=set(scope.step_ids),
            later_ids=set(scope.later_ids),
            local_names=scope.local_names | {fork.as_},
            input_names=scope.input_names,
        )
        self.steps(fork.steps, f"{p}/steps", inner, fork_depth=fork_depth + 1)

    # -- text -------------------------------------------------------------------------------

    def template(self, text: str, pointer: str, scope: _Scope) -> None:
        if len(text) > self.limits.max_template_chars:
            self.error(
                "limit.template_size",
                pointer,
                f"the template has {len(text)} characters; the limit is "
                f"{self.limits.max_template_chars}",
                "pass long text as an input instead",
            )
            return
        try:
            tree = parse_template(text)
        except TemplateFailure as exc:
            self.error(exc.code, pointer, exc.message, _TEMPLATE_HINTS[exc.kind])
            return
        self.names(tree, pointer, scope)

    def expression(self, text: str, pointer: str, scope: _Scope, *, code: str) -> None:
        try:
            tree = parse_expression(text)
        except TemplateFailure as exc:
            if exc.kind == "forbidden":
                self.error(exc.code, pointer, exc.message, _TEMPLATE_HINTS[exc.kind])
            else:
                self.error(code, pointer, exc.message, "write a Jinja expression, without {{ }}")
            return
        self.names(tree, pointer, scope)

    def names(self, tree: Any, pointer: str, scope: _Scope) -> None:
        free, step_refs = references(tree)
        known = {"inputs", "steps"} | scope.local_names
        for name in sorted(free - known):
            self.error(
                "template.unknown_name",
                pointer,
                f"`{name}` is not defined here",
                "templates see `inputs`, `steps` and the names bound by `fork.as`",
            )
        for ref in sorted(step_refs):
            if ref in scope.step_ids:
                continue
            if ref in scope.later_ids:
                self.error(
                    "program.forward_ref",
                    pointer,
                    f"`steps.{ref}` is used before the step that defines it",
                    f"move step `{ref}` earlier or this text later",
                )
            else:
                self.error(
                    "program.undefined_ref",
                    pointer,
                    f"there is no step `{ref}`",
                    "check the step id",
                )
        if scope.input_names is not None:
            for node_name in sorted(_input_refs(tree) - scope.input_names):
                self.error(
                    "template.unknown_input",
                    pointer,
                    f"`inputs.{node_name}` is not a property of the inputs schema",
                    "add it to `inputs.properties` or fix the name",
                )

    # -- constraints ------------------------------------------------------------------------

    def gen(self, step: Step, p: str, scope: _Scope) -> None:
        gen = step.gen
        assert gen is not None
        kinds = gen.constraint_kinds()
        if len(kinds) > 1:
            self.error(
                "grammar.conflict",
                p,
                f"a generation takes one constraint; this one has {', '.join(kinds)}",
                "keep one",
            )
            return
        if gen.max_tokens > self.limits.max_tokens_per_step:
            self.error(
                "limit.max_tokens",
                f"{p}/max_tokens",
                f"max_tokens is {gen.max_tokens}; the limit is {self.limits.max_tokens_per_step}",
                "lower it",
            )
        if gen.stop is not None and any(not s for s in gen.stop):
            self.error("program.invalid_value", f"{p}/stop", "stop strings must not be empty", "")
        if gen.choices is not None:
            self.choices(gen.choices, f"{p}/choices")
            return
        if gen.json_schema_from is not None:
            self.expression(
                gen.json_schema_from, f"{p}/json_schema_from", scope, code="gen.schema_from_syntax"
            )
        for err in constraints.check_gen(gen, base_dir=self._base_dir()):
            self.error(err.code, f"{p}{err.pointer}", err.message, err.hint)

    def choices(self, choices: list[str], p: str) -> None:
        if not choices:
            self.error("grammar.invalid_choices", p, "there are no choices", "list at least one")
        if len(set(choices)) != len(choices):
            dup = sorted({c for c in choices if choices.count(c) > 1})
            self.error(
                "grammar.invalid_choices", p, f"duplicate choices: {dup}", "remove duplicates"
            )
        if any(c == "" for c in choices):
            self.error("grammar.invalid_choices", p, "a choice is the empty string", "remove it")
        if len(choices) > self.limits.max_choices:
            self.error(
                "limit.choices",
                p,
                f"{len(choices)} choices; the limit is {self.limits.max_choices}",
                "use a json_schema enum or fewer choices",
            )

    def json_schema(self, schema: dict[str, Any], pointer: str, *, code: str) -> None:
        """A schema that only validates (inputs, the final output): its limits, validity and
        patterns, which RE2 evaluates (``grammar.regex_dialect`` when it would read one
        differently from xgrammar), and every ``$ref`` local and resolving (a remote or file
        ref would be fetched by nobody and fail every validation). ``code`` replaces
        ``grammar.invalid_schema``. Refs naming a library schema or a file beside the program
        are inlined first, as the compiler inlines them."""
        try:
            schema = constraints.resolve_schema_refs(schema, base_dir=self._base_dir())
        except GrammarError as unresolved:
            at = pointer + (unresolved.pointer or "")
            self.error(unresolved.code, at, unresolved.message, unresolved.hint or "")
            return
        problems = check_validation_schema(schema, get_limits())
        if not problems:
            problems = check_refs(schema, allow_recursive=True)
        for err in problems:
            self.error(
                code if err.code == "grammar.invalid_schema" else err.code,
                pointer + err.pointer,
                err.message,
                err.hint or "fix the JSON Schema",
            )

    def _base_dir(self) -> str | None:
        if self.source.file is None:
            return None
        from pathlib import Path

        return str(Path(self.source.file).resolve().parent)


def _property_names(schema: dict[str, Any]) -> set[str] | None:
    """Names an ``inputs`` schema defines, or None when it allows any."""
    props = schema.get("properties")
    if not isinstance(props, dict):
        return None
    if schema.get("additionalProperties", True) is not False and not schema.get("required"):
        return None
    return set(props)


def _input_refs(tree: Any) -> set[str]:
    from jinja2 import nodes

    out: set[str] = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "inputs":
            out.add(node.attr)
    return out


def _all_step_ids(steps: list[Step]) -> list[str]:
    out: list[str] = []
    for step in steps:
        out.append(step.id)
        if step.fork is not None:
            out.extend(_all_step_ids(step.fork.steps))
    return out


def _count_steps(steps: list[Step]) -> int:
    return sum(1 + (_count_steps(s.fork.steps) if s.fork else 0) for s in steps)


def _token_total(steps: list[Step], data: Any, width: int = 1) -> int:
    total = 0
    for step in steps:
        if step.gen is not None:
            total += width * step.gen.max_tokens
        if step.think is not None:
            total += width * step.think.max_tokens
        if step.fork is not None:
            branch = step.fork.n or ProgramLimits.max_fork_width
            total += _token_total(step.fork.steps, data, width * branch)
    return total


# -- entry points -----------------------------------------------------------------------------


def check_source(source: Source, limits: ProgramLimits | None = None) -> list[ProgramError]:
    checker = _Checker(source, limits or ProgramLimits())
    prog = checker.model()
    if prog is not None:
        checker.program(prog)
    return checker.errors


def parse_program(
    text: str, *, file: str | None = None, limits: ProgramLimits | None = None
) -> tuple[Program | None, list[ProgramError]]:
    try:
        source = parse_source(text, file=file)
    except SourceError as exc:
        return None, [exc.problem(file)]
    errors = check_source(source, limits)
    if errors:
        return None, errors
    return Program.model_validate(source.data), []


def check_program(data: dict[str, Any], limits: ProgramLimits | None = None) -> list[ProgramError]:
    """Check an already-parsed program (from an API body)."""
    return check_source(Source(data=json.loads(json.dumps(data))), limits)


def load_program(path: str, limits: ProgramLimits | None = None) -> Program:
    """Read and check a program file; raise :class:`ProgramInvalid` with every error."""
    try:
        source = load_source(path)
    except SourceError as exc:
        raise ProgramInvalid([exc.problem(path)]) from None
    errors = check_source(source, limits)
    if errors:
        raise ProgramInvalid(errors)
    return Program.model_validate(source.data)
