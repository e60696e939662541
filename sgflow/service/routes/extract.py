"""``POST /v1/extract``: a JSON object valid against the caller's schema, from a text.

Synchronous extraction is a queued run of the library's ``extract`` program that this
request waits on with a deadline, not a second code path: past ``timeout_s`` the answer is
202 with the run, which the client follows like any other.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sgflow.errors import SgflowError
from sgflow.grammars import check
from sgflow.grammars.spec import JsonSchema
from sgflow.grammars.validation import validation_errors
from sgflow.service.deps import TenantDep
from sgflow.service.errors import ApiError
from sgflow.service.routes.runs import RunStoreDep, SubmitterDep
from sgflow.service.runs import run_view

__all__ = ["router"]

router = APIRouter(tags=["extract"])

_PROGRAM = Path(__file__).parents[2] / "programs" / "library" / "extract.yaml"
_POLL_S = 0.05


@cache
def extract_program() -> dict[str, Any]:
    data = yaml.safe_load(_PROGRAM.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=20_000)
    output: Any = Field(description="the object this text should give (validated against schema)")


class ExtractRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_: dict[str, Any] = Field(alias="schema", description="the JSON Schema to fill")
    text: str | None = Field(default=None, min_length=1, max_length=100_000)
    document: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the text as chunks (pages, sections), joined with blank lines",
    )
    instructions: str | None = Field(default=None, max_length=4000)
    examples: list[Example] | None = Field(default=None, max_length=10, description="few-shot")
    timeout_s: float = Field(default=30.0, ge=0, le=300, description="wait at most; default 30")

    def full_text(self) -> str:
        if (self.text is None) == (self.document is None):
            raise ApiError(
                422, "request.invalid", "give exactly one of `text` or `document`", field="/text"
            )
        text = self.text if self.text is not None else "\n\n".join(self.document or [])
        if len(text) > 100_000:
            raise ApiError(
                422,
                "limit.text_size",
                f"the document has {len(text)} characters; the limit is 100000",
                field="/document",
                limit=100_000,
            )
        return text


@router.post("/extract", summary="Extract a schema-valid object from a text")
def extract(
    req: ExtractRequest, tenant: TenantDep, submitter: SubmitterDep, store: RunStoreDep
) -> JSONResponse:
    """200 ``{"object": …, "run": …}`` when done within ``timeout_s``; 202 with the run
    otherwise; 422 ``grammar.*`` with the JSON pointer of a schema part that cannot be
    enforced or is invalid."""
    problems = check(JsonSchema(req.schema_))
    if problems:
        first = problems[0]
        raise SgflowError(
            first.code,
            first.message,
            field="/schema" + first.pointer,
            limit=first.limit,
            hint=first.hint or None,
            extra={"errors": [dict(p.to_dict(), field="/schema" + p.pointer) for p in problems]},
        )
    inputs: dict[str, Any] = {"schema": req.schema_, "text": req.full_text()}
    if req.instructions:
        inputs["instructions"] = req.instructions
    if req.examples:
        for i, example in enumerate(req.examples):
            wrong = validation_errors(example.output, req.schema_, limit=1)
            if wrong:
                raise ApiError(
                    422,
                    "input.invalid",
                    f"example {i}'s output does not match the schema: {wrong[0]['message']}",
                    field=f"/examples/{i}/output{wrong[0]['pointer'].rstrip('/')}",
                )
        inputs["examples"] = [e.model_dump() for e in req.examples]
    submitted = submitter.submit(tenant, {"program": extract_program(), "inputs": inputs})
    deadline = time.monotonic() + req.timeout_s
    run = submitted.run
    while not run.finished and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        run = store.get(run.id) or run
    view = run_view(run)
    if not run.finished:
        return JSONResponse(view, status_code=202, headers={"Location": view["status_url"]})
    if run.status != "succeeded":
        error = run.error or {"code": "run.failed", "message": "the extraction failed"}
        raise SgflowError.from_dict(error, run=run.id, details=error.get("details"))
    return JSONResponse({"object": view["output"], "run": view})
