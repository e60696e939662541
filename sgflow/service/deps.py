"""FastAPI dependencies: settings, the stores, the caller's tenant, owned objects, bodies.

Authorization lives here, not in routes: a route that takes :data:`TenantDep` cannot run
unauthenticated, and one that takes :data:`OwnedProgram` cannot see another tenant's program
(another tenant's object answers 404 exactly like a missing one, never 403). Objects are
looked up under the caller's tenant prefix, so "someone else's" is indistinguishable from
"does not exist" by construction.

Every JSON body is read the same way: :func:`read_json_body` (whatever the Content-Type),
then, where the endpoint has a model, :func:`validate_body` (422 ``request.invalid`` with
the JSON pointer of every invalid field).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ValidationError

from sgflow.jsonbounds import JsonBoundsError, loads
from sgflow.service.auth import Tenant, authenticate, bearer_scheme
from sgflow.service.errors import ApiError, invalid_request, json_refused, malformed_json
from sgflow.service.middleware import JSON_BODY
from sgflow.settings import Settings
from sgflow.store import AsyncKeyStore, AsyncProgramStore, StoredProgram

__all__ = [
    "JsonBody",
    "JsonBodyDep",
    "KeyStoreDep",
    "OwnedProgram",
    "ProgramStoreDep",
    "SettingsDep",
    "TenantDep",
    "get_owned_program",
    "get_tenant",
    "program_not_found",
    "read_json_body",
    "resolve_program_ref",
    "validate_body",
]

M = TypeVar("M", bound=BaseModel)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_REF = re.compile(r"^([a-z0-9][a-z0-9._-]{0,63})(?:@([1-9][0-9]{0,8}|latest))?$")


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_key_store(request: Request) -> AsyncKeyStore:
    keys: AsyncKeyStore = request.app.state.keys
    return keys


async def get_program_store(request: Request) -> AsyncProgramStore:
    programs: AsyncProgramStore = request.app.state.programs
    return programs


SettingsDep = Annotated[Settings, Depends(get_settings)]
KeyStoreDep = Annotated[AsyncKeyStore, Depends(get_key_store)]
ProgramStoreDep = Annotated[AsyncProgramStore, Depends(get_program_store)]


async def get_tenant(
    request: Request,
    keys: KeyStoreDep,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Tenant:
    """The caller's tenant; raises 401 ``auth.missing`` / ``auth.invalid`` (see
    :func:`sgflow.service.auth.authenticate`). Records the tenant for the access log."""
    tenant = await authenticate(keys, request.headers.get("authorization"))
    request.state.tenant = tenant.name
    return tenant


TenantDep = Annotated[Tenant, Depends(get_tenant)]


def program_not_found(ref: str) -> ApiError:
    return ApiError(
        404,
        "program.not_found",
        f"there is no program {ref}",
        hint="GET /v1/programs lists yours",
    )


async def get_owned_program(
    name: str,
    version: Annotated[int, Path(ge=1, le=999_999_999)],
    tenant: TenantDep,
    programs: ProgramStoreDep,
) -> StoredProgram:
    """The caller's program ``name@version`` from the path, deleted or not. Raises 404
    ``program.not_found`` when the caller's tenant has none (whoever else may have one)."""
    stored = await programs.get(tenant.name, name, version) if _NAME.match(name) else None
    if stored is None:
        raise program_not_found(f"{name}@{version}")
    return stored


OwnedProgram = Annotated[StoredProgram, Depends(get_owned_program)]


async def resolve_program_ref(
    programs: AsyncProgramStore, tenant: Tenant, ref: str, *, field: str = "/program"
) -> StoredProgram:
    """The program a run names: ``name@version``, or ``name`` / ``name@latest`` for the
    highest version that is not deleted. ``field`` (default ``/program``) is where the ref
    sits in the request. Raises 422 ``request.invalid`` for a malformed ref, 404
    ``program.not_found``, 410 ``program.deleted`` for a deleted version."""
    match = _REF.match(ref)
    if match is None:
        raise ApiError(
            422,
            "request.invalid",
            f"{ref!r} is not a program reference",
            field=field,
            hint="write `name@version`, e.g. `invoice-extract@2`, or `name` for the latest",
        )
    name, version = match.group(1), match.group(2)
    if version in (None, "latest"):
        stored = await programs.latest(tenant.name, name)
    else:
        stored = await programs.get(tenant.name, name, int(version))
    if stored is None:
        raise program_not_found(ref)
    if stored.deleted:
        raise ApiError(
            410,
            "program.deleted",
            f"program {stored.ref} was deleted and takes no new runs",
            field=field,
            hint="use another version (GET /v1/programs/{name} lists them)",
        )
    return stored


@dataclass(frozen=True)
class JsonBody:
    """A request body parsed as JSON, with its text (for line numbers in errors)."""

    data: Any
    text: str


async def read_json_body(request: Request) -> JsonBody:
    """The body as JSON whatever its Content-Type, bounded by :mod:`sgflow.jsonbounds`
    (usually parsed already by :class:`~sgflow.service.middleware.JsonBodyMiddleware`).
    Raises 400 ``request.malformed_json`` for a body that is empty, not UTF-8 or not JSON,
    400 ``json.*`` / ``limit.json_depth`` / ``limit.json_number`` for JSON it refuses.
    (Size is limited earlier, by the middleware.)"""
    parsed = request.scope.get("state", {}).get(JSON_BODY)
    if parsed is not None:
        return JsonBody(data=parsed[0], text=parsed[1])
    raw = await request.body()
    settings: Settings = request.app.state.settings
    try:
        text = raw.decode("utf-8")
        return JsonBody(
            data=loads(text, max_depth=settings.max_json_depth, max_size=None), text=text
        )
    except UnicodeDecodeError as exc:
        raise malformed_json(f"not UTF-8 (byte {exc.start})") from None
    except JsonBoundsError as exc:
        raise json_refused(exc) from None


JsonBodyDep = Annotated[JsonBody, Depends(read_json_body)]


def validate_body(model: type[M], body: JsonBody) -> M:
    """``body`` (read by :func:`read_json_body`) as ``model``. Raises 422 ``request.invalid``
    naming every invalid field by its JSON pointer (``errors``), the first as ``field``."""
    try:
        return model.model_validate(body.data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise invalid_request([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
