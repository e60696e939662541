"""``/v1/programs``: submit, list, read and delete programs (immutable ``name@version``).

A deleted version still answers ``GET /v1/programs/{name}/{version}`` (200, with
``deleted_at``): runs that used it keep pointing at it and their users may read it. It takes
no new runs (``program.deleted``, 410, from :func:`sgflow.service.deps.resolve_program_ref`),
is left out of ``GET /v1/programs``, and its ``name@version`` is never reused (409).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from sgflow.errors import SgflowError
from sgflow.programs.checker import check_source
from sgflow.programs.errors import ProgramError
from sgflow.programs.loader import Source, SourceError, parse_source
from sgflow.service.deps import (
    JsonBodyDep,
    OwnedProgram,
    ProgramStoreDep,
    TenantDep,
    program_not_found,
)
from sgflow.service.errors import ApiError
from sgflow.service.models import (
    ErrorResponse,
    ProgramDetail,
    ProgramPage,
    ProgramSummary,
    ProgramVersions,
)
from sgflow.service.offload import run_cpu
from sgflow.service.program_check import CheckReport, check_program_body, source_text

__all__ = ["router"]

router = APIRouter(
    prefix="/programs",
    tags=["programs"],
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "title": "Program",
                            "description": "a program as JSON (format: "
                            "sgflow/programs/program.schema.json)",
                            "required": ["program", "steps"],
                        },
                        {
                            "type": "object",
                            "title": "ProgramSource",
                            "description": "a program as YAML (or JSON) text",
                            "properties": {"source": {"type": "string"}},
                            "required": ["source"],
                            "additionalProperties": False,
                        },
                    ]
                }
            }
        },
    }
}


def _problem(err: ProgramError) -> dict[str, Any]:
    return {
        "code": err.code,
        "field": err.pointer,
        "line": err.line,
        "message": err.message,
        "hint": err.hint or None,
    }


def _invalid(errors: list[ProgramError]) -> SgflowError:
    first = errors[0]
    return SgflowError(
        first.code,
        f"the program has {len(errors)} problem(s); the first: {first.message}",
        field=first.pointer,
        hint=first.hint or None,
        extra={"errors": [_problem(e) for e in errors]},
    )


def _checked(data: Any, text: str) -> tuple[dict[str, Any], str | None]:
    """The program data and its YAML source (None for a JSON program), checked.
    Raises 422 with every problem the static checker finds, each with its line.
    CPU-bound (the checker compiles grammars): run it with :func:`run_cpu`."""
    yaml_text = source_text(data)
    if yaml_text is not None:
        try:
            source = parse_source(yaml_text)
        except SourceError as exc:
            raise _invalid([exc.problem()]) from None
        errors = check_source(source)
        if errors:
            raise _invalid(errors)
        return source.data, yaml_text
    errors = check_source(Source(data=data))
    if errors:
        # only failures pay for the YAML pass that maps pointers to lines
        try:
            located = parse_source(text)
        except SourceError:
            located = Source(data=data)
        for err in errors:
            err.line = located.line_of(err.pointer)
        raise _invalid(errors)
    return data, None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_BODY_DOC,
    responses={
        200: {"model": ProgramDetail, "description": "the same version was already stored"},
        409: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)
async def create_program(
    tenant: TenantDep, body: JsonBodyDep, programs: ProgramStoreDep, response: Response
) -> ProgramDetail:
    """Check a program with the static checker and store it as ``name@version``.

    201 when stored; 200 when this ``name@version`` already holds the same content; 409
    ``program.version_exists`` when it holds other content, ``program.version_deleted``
    when it was deleted; 422 with every checker problem (``errors``: code, field, line,
    message, hint)."""
    data, source = await run_cpu(_checked, body.data, body.text)
    stored, outcome = await programs.put(tenant.name, data, source=source)
    if outcome == "conflict":
        raise ApiError(
            409,
            "program.version_exists",
            f"{stored.ref} already exists with other content ({stored.hash})",
            field="/version",
            hint="versions are immutable: bump `version` to publish a change",
        )
    if outcome == "deleted":
        raise ApiError(
            409,
            "program.version_deleted",
            f"{stored.ref} was deleted; a deleted version is never reused",
            field="/version",
            hint="bump `version`",
        )
    if outcome == "exists":
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/programs/{stored.name}/{stored.version}"
    return ProgramDetail.of(stored)


@router.post(
    "/check",
    openapi_extra=_BODY_DOC,
    responses={400: {"model": ErrorResponse}, 413: {"model": ErrorResponse}},
)
async def check_program(_tenant: TenantDep, body: JsonBodyDep) -> CheckReport:
    """Check a program as ``POST /v1/programs`` would, and store nothing: what ``sgflow
    check --explain`` reports, placed in the source for an editor.

    200 whether or not the program has problems: ``ok``, ``errors`` (code, field, line,
    span, message, hint), the program's ``ref`` and ``inputs_schema``, when ``ok`` the
    program as JSON, and (when it compiles, problems or not) the shared ``prefix`` (its
    text, and the spans of the source it comes from) and ``explain`` (per keyword of each
    step's JSON Schema: ``enforced`` by the grammar, ``validated`` after generation,
    ``rejected`` or ``ignored``). 422
    ``request.invalid`` for a ``source`` that is not a string or has other fields beside
    it; a hostile source is refused with the bounded loader's code (``limit.yaml_aliases``,
    ``json.duplicate_key``, ``limit.json_size``…), ``field`` ``/source`` and its ``line``."""
    return await run_cpu(check_program_body, body.data, body.text)


@router.get("")
async def list_programs(
    tenant: TenantDep,
    programs: ProgramStoreDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="names per page")] = 100,
    cursor: Annotated[str | None, Query(max_length=64, description="from next_cursor")] = None,
) -> ProgramPage:
    """The caller's programs by name, each at its latest version that is not deleted."""
    infos, next_cursor = await programs.list_latest(tenant.name, limit=limit, after=cursor)
    return ProgramPage(data=[ProgramSummary.of(i) for i in infos], next_cursor=next_cursor)


@router.get("/{name}")
async def list_versions(name: str, tenant: TenantDep, programs: ProgramStoreDep) -> ProgramVersions:
    """Every version of one program, deleted ones included (404 when there is none)."""
    infos = await programs.versions(tenant.name, name)
    if not infos:
        raise program_not_found(name)
    return ProgramVersions(name=name, versions=[ProgramSummary.of(i) for i in infos])


@router.get("/{name}/{version}")
async def get_program(program: OwnedProgram) -> ProgramDetail:
    """One version with its body and content hash; deleted versions too (``deleted_at``)."""
    return ProgramDetail.of(program)


@router.delete("/{name}/{version}")
async def delete_program(
    program: OwnedProgram, tenant: TenantDep, programs: ProgramStoreDep
) -> ProgramSummary:
    """Mark a version deleted: no new runs; runs that used it keep it. Idempotent."""
    deleted = await programs.delete(tenant.name, program.name, program.version)
    if deleted is None:  # cannot happen: versions are never removed
        raise program_not_found(program.ref)
    return ProgramSummary.of(deleted)
