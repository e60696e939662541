"""``GET /v1/models``: the engines' models and every stored program, as OpenAI model objects.

A stored program is listed as the model ``program:NAME@VERSION``; calling it through chat
completions or Responses runs the whole program (:mod:`sgflow.openai.program_models`). The
SDK does not escape ``:`` or ``@`` in ``models.retrieve(id)``'s path, so these ids reach the
service as they are. The list is not paginated (the SDK's ``models.list()`` reads one page);
``has_more: false`` is sent anyway, so a cursor-reading client stops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sgflow.errors import SgflowError

__all__ = [
    "PROGRAM_PREFIX",
    "ProgramModel",
    "model_list",
    "model_object",
    "parse_model_name",
    "program_model_id",
]

PROGRAM_PREFIX = "program:"
_REF = re.compile(r"^([a-z0-9][a-z0-9._-]{0,63})(?:@([1-9][0-9]{0,8}|latest))?$")


@dataclass(frozen=True)
class ProgramModel:
    """A ``program:NAME[@VERSION]`` model name; ``version`` None means the latest."""

    name: str
    version: int | None

    @property
    def ref(self) -> str:
        """The program reference runs take (``name@version``, or ``name`` for the latest)."""
        return self.name if self.version is None else f"{self.name}@{self.version}"


def parse_model_name(model: str, *, field: str = "/model") -> ProgramModel | None:
    """The program a model name names (``program:ticket-triage@1``), None for an engine
    model. Raises :class:`SgflowError` ``model.not_found`` for a malformed program name."""
    if not model.startswith(PROGRAM_PREFIX):
        return None
    match = _REF.match(model[len(PROGRAM_PREFIX) :])
    if match is None:
        raise SgflowError(
            "model.not_found",
            f"{model!r} is not a program model name",
            field=field,
            hint="write `program:NAME@VERSION` (GET /v1/models lists them)",
        )
    version = match.group(2)
    return ProgramModel(match.group(1), None if version in (None, "latest") else int(version))


def program_model_id(name: str, version: int) -> str:
    """The model id of a stored program version."""
    return f"{PROGRAM_PREFIX}{name}@{version}"


def model_object(model_id: str, *, created: float, owned_by: str) -> dict[str, Any]:
    """One OpenAI ``Model``."""
    return {"id": model_id, "object": "model", "created": int(created), "owned_by": owned_by}


def model_list(
    engine_models: Iterable[tuple[str, float]],
    programs: Iterable[tuple[str, int, float]],
    *,
    tenant: str,
) -> dict[str, Any]:
    """The body of ``GET /v1/models``: ``engine_models`` ``(id, created)`` owned by
    ``sgflow``, then the tenant's stored programs ``(name, version, created_at)`` owned by
    the tenant, each version a model (deleted versions are the caller's to leave out)."""
    data = [model_object(m, created=c, owned_by="sgflow") for m, c in engine_models]
    data += [
        model_object(program_model_id(name, version), created=created, owned_by=tenant)
        for name, version, created in sorted(programs)
    ]
    return {"object": "list", "data": data, "has_more": False}
