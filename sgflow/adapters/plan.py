"""Which engine feature each step of a program needs, and how an engine provides it.

:func:`plan_program` walks a compiled program (forks included) and gives every step that
generates under a constraint, or selects, one :class:`StepPlan`: the feature, and whether
the engine enforces it (``native``), sgflow emulates it exactly through another feature
(``emulated``) or it cannot run there (``refused``). :func:`require` raises the
``engine.unsupported`` error a run ends with before any token is generated. Validation
after generation is the same on every engine, whatever the plan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sgflow.adapters.base import Capabilities
from sgflow.adapters.emulation import Unsupported, lower
from sgflow.programs.errors import RunError
from sgflow.programs.ir import ProgramIR, StepIR

__all__ = ["StepPlan", "explain_schema", "plan_program", "require"]


@dataclass(frozen=True)
class StepPlan:
    step: str
    pointer: str
    feature: str
    support: str
    how: str
    origin: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def _plan(step: StepIR, pointer: str, caps: Capabilities) -> StepPlan | None:
    if step.select is not None:
        how = caps.select
        return StepPlan(step.id, f"{pointer}/select", "select", how.support, how.how)
    if step.gen is None or step.gen.constraint.kind == "free":
        return None
    c = step.gen.constraint
    how = caps.enforcement(c.kind)
    where = f"{pointer}/gen"
    if c.dynamic is None:
        try:
            lower(c.kind, c.source, caps)
        except Unsupported as exc:
            return StepPlan(step.id, where, c.kind, "refused", exc.reason, c.origin)
    return StepPlan(step.id, where, c.kind, how.support, how.how, c.origin)


def _walk(steps: tuple[StepIR, ...], pointer: str, caps: Capabilities) -> list[StepPlan]:
    plans: list[StepPlan] = []
    for i, step in enumerate(steps):
        here = f"{pointer}/{i}"
        found = _plan(step, here, caps)
        if found is not None:
            plans.append(found)
        if step.fork is not None:
            plans += _walk(step.fork.steps, f"{here}/fork/steps", caps)
    return plans


def plan_program(ir: ProgramIR, caps: Capabilities) -> list[StepPlan]:
    """One plan per constrained or selecting step of ``ir`` on ``caps``' engine."""
    return _walk(ir.steps, "/steps", caps)


def require(ir: ProgramIR, caps: Capabilities) -> list[StepPlan]:
    """The plans of ``ir``; raises ``engine.unsupported`` (``RunError``) naming the first
    refused step, its feature and the engine."""
    plans = plan_program(ir, caps)
    for p in plans:
        if p.support == "refused":
            raise RunError(
                "engine.unsupported",
                f"step `{p.step}` needs {p.feature}, which {caps.name} cannot enforce: {p.how}",
                step=p.step,
                field=p.pointer,
                hint="run the program on an engine that enforces it (sgflow check --engine URL "
                "lists what each step needs)",
            )
    return plans


def explain_schema(schema: dict[str, Any], caps: Capabilities) -> list[dict[str, Any]]:
    """:func:`sgflow.grammars.explain` for ``caps``' engine: a keyword xgrammar enforces but
    the engine's own grammar converter does not read is only validated afterwards there."""
    from sgflow.grammars import explain

    rows = [r.to_dict() for r in explain(schema)]
    if caps.json_keywords is None:
        return rows
    for row in rows:
        if row["status"] == "enforced" and row["keyword"] not in caps.json_keywords:
            row["status"] = "validated"
            row["note"] = (
                f"{caps.name}'s grammar converter does not enforce it; validated after generation"
            )
    return rows
