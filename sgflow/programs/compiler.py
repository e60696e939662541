"""Compile a checked program to the IR, and the IR to an ``sgl.function``.

``compile_program`` is deterministic and cached by the program's content hash. The
executor (:mod:`sgflow.execution.executor`) interprets the IR.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

from sgflow.programs.constraints import resolve_gen, resolve_schema_refs
from sgflow.programs.ir import ForkIR, GenOp, ProgramIR, StepIR, ThinkOp
from sgflow.programs.model import Program, Step
from sgflow.programs.templates import render

__all__ = ["PrefixLayout", "compile_program", "prefix_layout", "program_hash", "static_prefix"]

_CACHE_SIZE = 256
_cache: OrderedDict[str, ProgramIR] = OrderedDict()
_lock = threading.Lock()


def program_hash(prog: Program, base_dir: str | None = None) -> str:
    body = prog.model_dump(mode="json", by_alias=True, exclude_none=True)
    payload = json.dumps([body, base_dir], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def compile_program(prog: Program, *, base_dir: str | None = None) -> ProgramIR:
    """Lower ``prog`` (already checked) to :class:`ProgramIR`; cached by content hash."""
    key = program_hash(prog, base_dir)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    ir = ProgramIR(
        name=prog.program,
        version=prog.version,
        inputs_schema=prog.inputs,
        system=prog.system,
        context=tuple((m.role, m.content) for m in prog.context),
        steps=tuple(_step(s, base_dir) for s in prog.steps),
        output_value=prog.output.value if prog.output else None,
        output_schema=(
            resolve_schema_refs(prog.output.schema_, base_dir=base_dir, pointer="/output/schema")
            if prog.output and prog.output.schema_ is not None
            else None
        ),
        on_invalid=prog.policy.on_invalid,
        max_attempts=prog.policy.max_attempts,
        timeout_s=prog.policy.timeout_s,
        token_budget=prog.policy.token_budget,
    )
    with _lock:
        _cache[key] = ir
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return ir


def _step(step: Step, base_dir: str | None) -> StepIR:
    gen = None
    if step.gen is not None:
        gen = GenOp(
            constraint=resolve_gen(step.gen, base_dir=base_dir),
            max_tokens=step.gen.max_tokens,
            temperature=step.gen.temperature,
            top_p=step.gen.top_p,
            stop=tuple(step.gen.stop or ()),
        )
    choices = step.select_choices()
    fork = None
    if step.fork is not None:
        fork = ForkIR(
            over=step.fork.over,
            n=step.fork.n,
            var=step.fork.as_,
            steps=tuple(_step(s, base_dir) for s in step.fork.steps),
        )
    think = None
    if step.think is not None:
        think = ThinkOp(step.think.prompt, step.think.max_tokens, step.think.answer_prompt)
    return StepIR(
        id=step.id,
        condition=step.if_,
        system=step.system,
        user=step.user,
        assistant=step.assistant,
        gen=gen,
        select=tuple(choices) if choices is not None else None,
        think=think,
        fork=fork,
    )


_TEMPLATE_MARKS = ("{{", "{%", "{#")
_TAGS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
MIN_PREFIX_CHARS = 64


@dataclass(frozen=True)
class PrefixLayout:
    """What runs of a program share: ``text``, the chat-formatted prefix every run starts
    with; ``breaks_at``, the turn where the first per-input text appears (None: nowhere in
    the opening turns); ``static_after``, literal characters of the opening turns after that
    point, which runs cannot share (moving per-input text after them would let them);
    ``fields``, the JSON pointers (into the program) of the turns the prefix covers, wholly
    or, for the last one when ``breaks_at`` is set, up to its first template mark."""

    text: str
    breaks_at: str | None
    static_after: int
    fields: tuple[str, ...] = ()


def _static_head(template: str) -> tuple[str, bool]:
    """The text of ``template`` before its first Jinja mark, and whether that is all of it."""
    cut = min((i for i in (template.find(m) for m in _TEMPLATE_MARKS) if i >= 0), default=-1)
    return (template, True) if cut < 0 else (template[:cut], False)


def _opening_turns(ir: ProgramIR) -> list[tuple[str, str, str, str]]:
    """``(where, role, template, pointer)`` of what every run sends before its first
    generation; ``pointer`` is the template's place in the program."""
    turns = [("system", "system", ir.system, "/system")] if ir.system is not None else []
    turns += [
        (f"context {i + 1}", role, text, f"/context/{i}/content")
        for i, (role, text) in enumerate(ir.context)
    ]
    first = ir.steps[0] if ir.steps else None
    if first is not None and first.condition is None:
        if first.system is not None:
            turns.append((f"step `{first.id}` system", "system", first.system, "/steps/0/system"))
        if first.user is not None and first.think is None:
            turns.append((f"step `{first.id}` user", "user", first.user, "/steps/0/user"))
    return turns


def prefix_layout(ir: ProgramIR, *, chat_template: str = "chatml") -> PrefixLayout:
    """The shared prefix of ``ir``'s runs and what ends it (see :class:`PrefixLayout`)."""
    from sglang.lang.chat_template import get_chat_template

    template = get_chat_template(chat_template)
    history: list[dict[str, str]] = []
    parts: list[str] = []
    turns = _opening_turns(ir)
    fields: list[str] = []
    for i, (where, role, content, pointer) in enumerate(turns):
        head, whole = _static_head(content)
        prefix, suffix = template.get_prefix_and_suffix(role, history)
        parts.append(prefix + (render(content, {}) if whole else head))
        fields.append(pointer)
        if not whole:
            rest = [content[len(head) :]] + [t for _, _, t, _ in turns[i + 1 :]]
            after = sum(len(_TAGS.sub("", t).strip()) for t in rest)
            return PrefixLayout("".join(parts), where, after, tuple(fields))
        parts.append(suffix)
        history.append({"role": role, "content": content})
    return PrefixLayout("".join(parts), None, 0, tuple(fields))


def static_prefix(ir: ProgramIR, *, chat_template: str = "chatml") -> str | None:
    """The chat-formatted text every run of ``ir`` starts with, whatever its inputs: the
    system prompt, the few-shot context turns and the first step's system/user text up to
    the first template expression. Batches warm it once on the engine before fanning out
    (SGLang's ``cache_prefix``). None when shorter than ``MIN_PREFIX_CHARS``."""
    text = prefix_layout(ir, chat_template=chat_template).text
    return text if len(text) >= MIN_PREFIX_CHARS else None
