"""OpenAI's ``/v1/files``: upload a batch input file, read its object and content, delete it.

``POST /v1/files`` takes ``multipart/form-data`` (``file``, ``purpose: batch``), as the SDK's
``client.files.create(file=…, purpose="batch")`` sends it, and ``GET /v1/files`` pages
through the caller's files as ``client.files.list()`` does; the file is stored in Redis under
the caller's tenant (:mod:`sgflow.store.files`), at most ``max_file_bytes`` (413
``limit.file_size``; the body-size middleware gives this path that limit plus the form's
overhead). Batch files are JSONL, so the content must be UTF-8. Result files of OpenAI
batches (``purpose: batch_output``) are read here too. Another tenant's file is a 404
``file.not_found``, like a missing one. Errors are in OpenAI's shape.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sgflow.openai import file_object
from sgflow.service.deps import SettingsDep, TenantDep
from sgflow.service.errors import ApiError
from sgflow.service.models import cursor_page
from sgflow.service.multipart import parse_form
from sgflow.store import AsyncFileStore, StoredFile

__all__ = ["FORM_OVERHEAD", "FileStoreDep", "file_not_found", "router"]

router = APIRouter(prefix="/files", tags=["openai"])

FORM_OVERHEAD = 64 << 10  # bytes the form may add around the file (boundaries, fields)
PURPOSES = ("batch",)


async def get_file_store(request: Request) -> AsyncFileStore:
    files: AsyncFileStore = request.app.state.files
    return files


FileStoreDep = Annotated[AsyncFileStore, Depends(get_file_store)]


def file_not_found(file_id: str) -> ApiError:
    return ApiError(404, "file.not_found", f"there is no file {file_id}", field="path:file_id")


def _object(stored: StoredFile) -> dict[str, Any]:
    return file_object(
        stored.id,
        size=stored.size,
        created_at=stored.created_at,
        filename=stored.filename,
        purpose=stored.purpose,
    )


async def _owned(files: AsyncFileStore, tenant: str, file_id: str) -> StoredFile:
    stored = await files.get(tenant, file_id) if len(file_id) <= 64 else None
    if stored is None:
        raise file_not_found(file_id)
    return stored


@router.post("", summary="Upload a file (OpenAI)")
async def create_file(
    request: Request, tenant: TenantDep, files: FileStoreDep, settings: SettingsDep
) -> dict[str, Any]:
    """``multipart/form-data`` with ``file`` and ``purpose`` (``batch``): OpenAI's
    ``FileObject``, ``status: processed``."""
    request.state.openai_errors = True
    body = await request.body()
    form = parse_form(body, request.headers.get("content-type", ""))
    purpose = form["purpose"].data.decode("utf-8", "replace") if "purpose" in form else None
    if purpose not in PURPOSES:
        raise ApiError(
            422,
            "request.invalid",
            f"`purpose` must be one of {', '.join(PURPOSES)}",
            field="/purpose",
        )
    part = form.get("file")
    if part is None or part.filename is None:
        raise ApiError(422, "request.invalid", "the form has no `file` part", field="/file")
    if len(part.data) > settings.max_file_bytes:
        raise ApiError(
            413,
            "limit.file_size",
            f"the file has {len(part.data)} bytes; the limit is {settings.max_file_bytes}",
            field="/file",
            limit=settings.max_file_bytes,
            hint="split the requests into several batch files",
        )
    try:
        content = part.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            422,
            "request.invalid",
            f"a batch file is JSONL, UTF-8; byte {exc.start} is not",
            field="/file",
        ) from None
    stored = StoredFile(
        id="file-" + uuid.uuid4().hex,
        filename=part.filename or "upload.jsonl",
        purpose=purpose,
        size=len(part.data),
        created_at=time.time(),
    )
    await files.put(tenant.name, stored, content)
    return _object(stored)


MAX_LIST = 10_000  # OpenAI's own ceiling for `limit`


def _list_limit(raw: str | None) -> int:
    if raw is None:
        return MAX_LIST
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST:
        raise ApiError(
            422,
            "request.invalid",
            f"`limit` must be an integer from 1 to {MAX_LIST}, not {raw[:40]!r}",
            field="query:limit",
            limit=MAX_LIST,
        )
    return limit


@router.get("", summary="The caller's files (OpenAI)")
async def list_files(
    request: Request,
    tenant: TenantDep,
    files: FileStoreDep,
    purpose: str | None = None,
    limit: str | None = None,
    order: str = "desc",
    after: str | None = None,
) -> dict[str, Any]:
    """OpenAI's cursor page: ``data`` in creation order (``order``: ``desc``, the default,
    or ``asc``), at most ``limit`` (1 to 10,000, default 10,000) after the file ``after``,
    only ``purpose`` if given (``batch``, ``batch_output``); ``first_id``, ``last_id`` and
    ``has_more`` as the SDK's paginator reads them."""
    request.state.openai_errors = True
    size = _list_limit(limit)
    if order not in ("asc", "desc"):
        raise ApiError(422, "request.invalid", "`order` must be asc or desc", field="query:order")
    if after is not None and len(after) > 64:
        raise ApiError(
            422,
            "request.invalid",
            "`after` is a file id from a page before (at most 64 characters)",
            field="query:after",
            limit=64,
        )
    listed = await files.list(
        tenant.name, limit=size, newest_first=order == "desc", after=after, purpose=purpose
    )
    if listed is None:
        raise ApiError(422, "request.invalid", f"there is no file {after}", field="query:after")
    found, has_more = listed
    data = [_object(f) for f in found]
    return cursor_page(data, has_more=has_more)


@router.get("/{file_id}", summary="A file's object (OpenAI)")
async def get_file(file_id: str, tenant: TenantDep, files: FileStoreDep) -> dict[str, Any]:
    return _object(await _owned(files, tenant.name, file_id))


@router.get("/{file_id}/content", summary="A file's content (OpenAI)")
async def file_content(file_id: str, tenant: TenantDep, files: FileStoreDep) -> Response:
    await _owned(files, tenant.name, file_id)
    content = await files.content(tenant.name, file_id)
    if content is None:
        raise file_not_found(file_id)
    return Response(content.encode("utf-8"), media_type="application/octet-stream")


@router.delete("/{file_id}", summary="Delete a file (OpenAI)")
async def delete_file(file_id: str, tenant: TenantDep, files: FileStoreDep) -> dict[str, Any]:
    if len(file_id) > 64 or not await files.delete(tenant.name, file_id):
        raise file_not_found(file_id)
    return {"id": file_id, "object": "file", "deleted": True}
