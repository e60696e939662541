"""``/playground``: the built page and its two files, served without a key, with headers
that keep the page to its own origin."""

from __future__ import annotations

import re

import httpx
import pytest

from sgflow.service.playground import (
    NONCE_PLACEHOLDER,
    SECURITY_HEADERS,
    STATIC_DIR,
    content_security_policy,
)
from tests.service.conftest import error_of


def test_playground_redirects_to_its_folder(anon: httpx.Client) -> None:
    r = anon.get("/playground")
    assert r.status_code == 308
    assert r.headers["location"] == "playground/"
    assert httpx.URL(str(r.url)).join(r.headers["location"]).path == "/playground/"


def test_the_page_comes_with_a_fresh_nonce_for_the_editors_stylesheet(anon: httpx.Client) -> None:
    first, second = anon.get("/playground/"), anon.get("/playground/")
    assert first.status_code == 200 and first.headers["content-type"] == "text/html; charset=utf-8"
    assert first.headers["cache-control"] == "no-store"
    nonces = []
    for r in (first, second):
        [nonce] = re.findall(r'name="sgflow-csp-nonce" content="([^"]+)"', r.text)
        assert r.headers["content-security-policy"] == content_security_policy(nonce)
        assert "style-src 'self' 'nonce-" in r.headers["content-security-policy"]
        nonces.append(nonce)
    assert nonces[0] != nonces[1] and len(nonces[0]) >= 24
    template = (STATIC_DIR / "index.html").read_bytes()
    assert first.content == template.replace(NONCE_PLACEHOLDER, nonces[0].encode())
    for name, value in SECURITY_HEADERS.items():
        assert first.headers[name] == value


@pytest.mark.parametrize(
    ("file", "content_type"),
    [("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8")],
)
def test_files_are_served_without_a_key_and_with_security_headers(
    anon: httpx.Client, file: str, content_type: str
) -> None:
    r = anon.get(f"/playground/{file}")
    assert r.status_code == 200
    assert r.content == (STATIC_DIR / file).read_bytes()
    assert r.headers["content-type"] == content_type
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value
    csp = r.headers["content-security-policy"]
    assert csp == content_security_policy()
    assert "default-src 'none'" in csp and "http" not in csp  # no other origin, ever
    again = anon.get(f"/playground/{file}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_the_page_loads_nothing_from_elsewhere() -> None:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    assert 'src="app.js"' in html and 'href="app.css"' in html
    for name in ("index.html", "app.js", "app.css"):
        text = (STATIC_DIR / name).read_text(encoding="utf-8")
        assert "//cdn" not in text and "googleapis" not in text and "unpkg" not in text


@pytest.mark.parametrize("name", ["nope.js", "index.html", "..%2Fapp.py", "static", "%2e%2e"])
def test_other_names_are_not_found(anon: httpx.Client, name: str) -> None:
    r = anon.get(f"/playground/{name}")
    assert r.status_code == 404
    assert error_of(r)["code"] == "route.not_found"
