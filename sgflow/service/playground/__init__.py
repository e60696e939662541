"""``/playground``: the browser playground, static files built from ``playground/`` (the
repository's top-level folder) into ``static/`` by ``make playground`` and shipped in the
package, so serving it needs neither Node nor the network.

The files need no key: the page asks for one and keeps it in the browser (localStorage),
sending it as ``Authorization: Bearer`` to the ``/v1`` API like any other client. Every
answer carries a Content-Security-Policy that allows this origin only: nothing from a CDN,
no inline script, and no inline style but the editor's own stylesheet, which it inserts as
a ``<style>`` element carrying the nonce that ``index.html`` is served with (a new one per
request, so the page is never cached; its two files are, revalidated by their ETag).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from sgflow.service.errors import ApiError

__all__ = [
    "NONCE_PLACEHOLDER",
    "SECURITY_HEADERS",
    "STATIC_DIR",
    "content_security_policy",
    "router",
]

STATIC_DIR = Path(__file__).parent / "static"

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}

NONCE_PLACEHOLDER = b"__CSP_NONCE__"  # in index.html's <meta name="sgflow-csp-nonce">

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def content_security_policy(nonce: str | None = None) -> str:
    """This origin only; ``nonce`` (the page's) lets the editor's ``<style>`` element in."""
    style = f"'self' 'nonce-{nonce}'" if nonce else "'self'"
    return (
        f"default-src 'none'; script-src 'self'; style-src {style}; connect-src 'self'; "
        "img-src 'self' data:; font-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class _Asset:
    body: bytes
    etag: str


_assets: dict[str, _Asset] = {}


async def _asset(name: str) -> _Asset:
    """A built file, read once per process (a few hundred kB in all)."""
    asset = _assets.get(name)
    if asset is None:
        body = await anyio.Path(STATIC_DIR / name).read_bytes()
        asset = _assets[name] = _Asset(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return asset


@router.get("/playground")
async def playground_root() -> RedirectResponse:
    """To ``/playground/``, so the page's relative URLs (its files, ``../v1``) resolve
    under whatever path the service is mounted at."""
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": content_security_policy()}
    return RedirectResponse("playground/", status_code=308, headers=headers)


@router.get("/playground/")
async def playground_page() -> Response:
    """``index.html`` with a fresh nonce for the editor's stylesheet (never cached)."""
    nonce = secrets.token_urlsafe(18)
    page = (await _asset("index.html")).body.replace(NONCE_PLACEHOLDER, nonce.encode())
    headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": content_security_policy(nonce),
        "Cache-Control": "no-store",
    }
    return Response(page, media_type=_TYPES["index.html"], headers=headers)


@router.get("/playground/{name}")
async def playground_file(request: Request, name: str) -> Response:
    """``app.js`` or ``app.css``; 404 ``route.not_found`` for any other name; 304 when
    ``If-None-Match`` names the current version."""
    if name not in _TYPES or name == "index.html":
        raise ApiError(404, "route.not_found", f"the playground has no file {name!r}")
    asset = await _asset(name)
    headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": content_security_policy(),
        "Cache-Control": "no-cache",
        "ETag": asset.etag,
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=_TYPES[name], headers=headers)
