"""Request and response models of the API (what /docs shows). One section per resource."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sgflow.store import ProgramInfo, StoredProgram

__all__ = [
    "ErrorDetail",
    "ErrorResponse",
    "ProgramDetail",
    "ProgramPage",
    "ProgramSummary",
    "ProgramVersions",
    "cursor_page",
]


def cursor_page(data: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    """OpenAI's cursor page (``client.files.list()``, ``client.batches.list()`` iterate it):
    ``first_id``/``last_id`` name the page's ends, the next page starts ``after=last_id``."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


# -- errors -----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """See :mod:`sgflow.service.errors` for the codes."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="stable code, e.g. `program.version_exists`")
    message: str
    field: str | None = Field(
        default=None, description="JSON pointer into the body, or `query:x`, `path:x`, `header:x`"
    )
    limit: Any = Field(default=None, description="the limit exceeded, for `limit.*` codes")
    hint: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# -- programs ---------------------------------------------------------------------------------


class ProgramSummary(BaseModel):
    name: str
    version: int
    ref: str = Field(description="`name@version`, how runs name it")
    hash: str = Field(description="`sha256:` of the program's canonical JSON")
    description: str | None = None
    created_at: float = Field(description="epoch seconds")
    deleted_at: float | None = Field(
        default=None, description="epoch seconds; a deleted version takes no new runs"
    )

    @classmethod
    def of(cls, info: ProgramInfo) -> ProgramSummary:
        return cls(
            name=info.name,
            version=info.version,
            ref=info.ref,
            hash=info.hash,
            description=info.description,
            created_at=info.created_at,
            deleted_at=info.deleted_at,
        )


class ProgramDetail(ProgramSummary):
    program: dict[str, Any] = Field(description="the program as checked and stored")
    source: str | None = Field(default=None, description="the YAML text, when sent as `source`")

    @classmethod
    def of(cls, info: ProgramInfo) -> ProgramDetail:
        assert isinstance(info, StoredProgram)
        summary = ProgramSummary.of(info).model_dump()
        return cls(**summary, program=info.program, source=info.source)


class ProgramPage(BaseModel):
    data: list[ProgramSummary] = Field(description="latest live version of each program")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: end")


class ProgramVersions(BaseModel):
    name: str
    versions: list[ProgramSummary] = Field(description="every version, deleted ones included")
