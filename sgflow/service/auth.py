"""Who is calling: ``Authorization: Bearer <API key>`` → the :class:`Tenant` it belongs to.

Every program, run and batch belongs to one tenant; routes get the tenant from
:data:`sgflow.service.deps.TenantDep` and never from the request body.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.security import HTTPBearer

from sgflow.service.errors import ApiError
from sgflow.store import AsyncKeyStore

__all__ = ["Tenant", "authenticate", "bearer_scheme"]

# Declares the scheme in the OpenAPI document (the Authorize button of /docs); the header
# itself is read by ``authenticate`` so that a missing and a wrong key answer differently.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="api_key",
    description="an API key from `sgflow keys create --tenant NAME`",
)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Tenant:
    """The caller: ``name`` of the tenant and ``key_id`` of the key it used."""

    name: str
    key_id: str


async def authenticate(keys: AsyncKeyStore, authorization: str | None) -> Tenant:
    """The tenant of a valid ``Authorization`` header value.

    Raises :class:`ApiError` 401 ``auth.missing`` without a header, 401 ``auth.invalid`` for
    another scheme or a key that is malformed, unknown, wrong or revoked (one answer for all,
    so the response tells an attacker nothing); both carry ``WWW-Authenticate: Bearer``.
    """
    if not authorization or not authorization.strip():
        raise ApiError(
            401,
            "auth.missing",
            "this endpoint needs an API key",
            field="header:authorization",
            hint="send `Authorization: Bearer sgf_…`; create a key with `sgflow keys create`",
            headers=_CHALLENGE,
        )
    scheme, _, secret = authorization.strip().partition(" ")
    key = await keys.verify_key(secret.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        raise ApiError(
            401,
            "auth.invalid",
            "the API key is not valid (malformed, unknown or revoked)",
            field="header:authorization",
            hint="send `Authorization: Bearer sgf_…` with a current key (`sgflow keys list`)",
            headers=_CHALLENGE,
        )
    return Tenant(name=key.tenant, key_id=key.id)
