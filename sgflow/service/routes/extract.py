"""``POST /v1/extract``: a JSON object valid against the caller's schema, from a text.

Synchronous extraction is a queued run of the library's ``extract`` program that this
request waits on with a deadline, not a second code path: past ``timeout_s`` the answer is
202 with the run, which the client follows like any other. The wait is a subscription to the
run's events on this process's event hub (no thread, no polling), until ``run.finished``.

The body is JSON whatever its Content-Type, read like every other body
(:func:`~sgflow.service.deps.read_json_body`, then :class:`ExtractRequest`).
"""

from __future__ import annotations

import contextlib
from functools import cache, partial
from pathlib import Path
from typing import Any

import anyio
import yaml
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sgflow.errors import SgflowError
from sgflow.grammars import check
from sgflow.grammars.spec import JsonSchema
from sgflow.grammars.validation import validation_errors
from sgflow.service.deps import JsonBodyDep, TenantDep, validate_body
from sgflow.service.errors import ApiError
from sgflow.service.offload import run_cpu
from sgflow.service.routes.runs import HubDep, RunStoreDep, SubmitterDep
from sgflow.service.runs import cancel_submitted, run_view

__all__ = ["router"]

router = APIRouter(tags=["extract"])

_PROGRAM = Path(__file__).parents[2] / "programs" / "library" / "extract.yaml"


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


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` references replaced by the definitions (OpenAPI
    resolves ``$ref`` against its own document, not the schema's)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _inline_refs(ExtractRequest.model_json_schema(by_alias=True))
            }
        },
    }
}


def _schema_problems(schema: dict[str, Any]) -> None:
    """Raise 422 ``grammar.*`` when the schema cannot be enforced (CPU-bound: a compile)."""
    problems = check(JsonSchema(schema))
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


def _check_examples(req: ExtractRequest) -> None:
    for i, example in enumerate(req.examples or []):
        wrong = validation_errors(example.output, req.schema_, limit=1)
        if wrong:
            raise ApiError(
                422,
                "input.invalid",
                f"example {i}'s output does not match the schema: {wrong[0]['message']}",
                field=f"/examples/{i}/output{wrong[0]['pointer'].rstrip('/')}",
            )


@router.post(
    "/extract", summary="Extract a schema-valid object from a text", openapi_extra=_OPENAPI_BODY
)
async def extract(
    request: Request,
    body: JsonBodyDep,
    tenant: TenantDep,
    submitter: SubmitterDep,
    store: RunStoreDep,
    hub: HubDep,
) -> JSONResponse:
    """Body: :class:`ExtractRequest` (JSON, whatever the Content-Type). 200 ``{"object": …,
    "run": …}`` when done within ``timeout_s``; 202 with the run otherwise; 422
    ``request.invalid`` naming each invalid field, 422 ``grammar.*`` with the JSON pointer
    of a schema part that cannot be enforced or is invalid."""
    req = await run_cpu(validate_body, ExtractRequest, body)
    await run_cpu(_schema_problems, req.schema_)
    inputs: dict[str, Any] = {"schema": req.schema_, "text": req.full_text()}
    if req.instructions:
        inputs["instructions"] = req.instructions
    if req.examples:
        await run_cpu(_check_examples, req)
        inputs["examples"] = [e.model_dump() for e in req.examples]
    # compiled against the vocabulary beside the run (a schema that compiles costs nothing)
    submitted = await request.app.state.vocabulary_check.beside(
        [(req.schema_, "/schema")],
        lambda: submitter.submit(tenant, {"program": extract_program(), "inputs": inputs}),
        partial(cancel_submitted, store),
    )
    run = submitted.run
    if not run.finished and req.timeout_s > 0:
        async with hub.subscribe(run.id) as events:
            with anyio.move_on_after(req.timeout_s), contextlib.suppress(StopAsyncIteration):
                async for _, kind, _ in events:
                    if kind == "run.finished":
                        break
        run = await store.get(run.id) or run
    view = run_view(run)
    if not run.finished:
        return JSONResponse(view, status_code=202, headers={"Location": view["status_url"]})
    if run.status != "succeeded":
        error = run.error or {"code": "run.failed", "message": "the extraction failed"}
        raise SgflowError.from_dict(error, run=run.id, details=error.get("details"))
    return JSONResponse({"object": view["output"], "run": view})
