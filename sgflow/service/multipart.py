"""A small ``multipart/form-data`` reader for ``POST /v1/files`` (the body is already in
memory, bounded by the size middleware): the form's fields by name, each its bytes and, for
a file part, its file name. Pure; no dependency on ``python-multipart``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sgflow.service.errors import ApiError

__all__ = ["FormPart", "parse_form"]

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_PARAM = re.compile(r';\s*([a-zA-Z*]+)="((?:[^"\\]|\\.)*)"|;\s*([a-zA-Z*]+)=([^;\s]+)')


@dataclass(frozen=True)
class FormPart:
    name: str
    data: bytes
    filename: str | None = None


def _malformed(message: str) -> ApiError:
    return ApiError(
        422,
        "request.invalid",
        f"the form is malformed: {message}",
        field="",
        hint="send multipart/form-data with the fields `file` and `purpose`",
    )


def parse_form(body: bytes, content_type: str) -> dict[str, FormPart]:
    """The parts of a ``multipart/form-data`` body (the first of each name). Raises 422
    ``request.invalid`` when it is not one."""
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        raise _malformed("the Content-Type must be multipart/form-data")
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise _malformed("no boundary in the Content-Type")
    delimiter = b"--" + found.group(1).encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise _malformed("no parts")
    parts: dict[str, FormPart] = {}
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise _malformed("a part has no header end")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        part = _part(head.decode("latin-1"), data)
        if part is not None and part.name not in parts:
            parts[part.name] = part
    return parts


def _part(head: str, data: bytes) -> FormPart | None:
    for line in head.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        params: dict[str, str] = {}
        for m in _PARAM.finditer(value):
            if m.group(1):
                params[m.group(1).lower()] = m.group(2).replace('\\"', '"')
            else:
                params[m.group(3).lower()] = m.group(4)
        if "name" not in params:
            return None
        filename = params.get("filename")
        if filename is not None:
            filename = filename.encode("latin-1").decode("utf-8", "replace")
        return FormPart(params["name"], data, filename)
    return None
