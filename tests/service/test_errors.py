"""One error shape for everything: bad JSON, unknown routes, size limits, invalid requests,
and bugs (500 with a request id, never a traceback)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from sgflow.service import Settings, create_app
from sgflow.service.errors import loc_to_field
from tests.service.conftest import REDIS_URL, error_of

VALID = {"program": "tiny", "steps": [{"id": "a", "user": "hi", "gen": {"max_tokens": 4}}]}


@pytest.mark.parametrize(
    ("loc", "field"),
    [
        (("body",), ""),
        (("body", "steps", 0, "gen"), "/steps/0/gen"),
        (("body", "a/b", "m~n"), "/a~1b/m~0n"),
        (("query", "limit"), "query:limit"),
        (("path", "version"), "path:version"),
        (("header", "idempotency-key"), "header:idempotency-key"),
        ((), ""),
    ],
)
def test_loc_to_field(loc: tuple[object, ...], field: str) -> None:
    assert loc_to_field(loc) == field


def test_malformed_json(acme: httpx.Client) -> None:
    r = acme.post("/v1/programs", content=b'{"program": "x", steps: []}')
    assert r.status_code == 400
    err = error_of(r)
    assert err["code"] == "request.malformed_json"
    assert err["field"] == ""
    assert "line 1 column 18" in str(err["message"])


def test_body_not_utf8(acme: httpx.Client) -> None:
    r = acme.post("/v1/programs", content=b'{"program": "\xff"}')
    assert r.status_code == 400
    assert error_of(r)["code"] == "request.malformed_json"


def test_empty_body(acme: httpx.Client) -> None:
    r = acme.post("/v1/programs", content=b"")
    assert r.status_code == 400
    assert error_of(r)["code"] == "request.malformed_json"


def test_json_depth_is_a_setting(prefix: str) -> None:
    app = create_app(Settings(redis_url=REDIS_URL, redis_prefix=prefix, max_json_depth=8))
    with TestClient(app) as client:
        r = client.post("/v1/runs", content=b'{"inputs": [[[[[[[[1]]]]]]]]}')
        assert r.status_code == 400
        error = error_of(r)
        assert (error["code"], error["field"], error["limit"]) == (
            "limit.json_depth",
            "/inputs/0/0/0/0/0/0/0",
            8,
        )
        assert client.post("/v1/runs", content=b'{"inputs": [[[[[[1]]]]]]}').status_code == 401


def test_oversized_body_with_content_length(acme: httpx.Client, settings: Settings) -> None:
    r = acme.post("/v1/programs", content=b" " * (settings.max_request_bytes + 1))
    assert r.status_code == 413
    err = error_of(r)
    assert err["code"] == "limit.request_size"
    assert err["limit"] == settings.max_request_bytes
    assert str(settings.max_request_bytes) in str(err["message"])


def test_oversized_chunked_body(acme: httpx.Client, settings: Settings) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(settings.max_request_bytes // 65536 + 2):
            yield b" " * 65536

    r = acme.post("/v1/programs", content=chunks())
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413
    assert error_of(r)["code"] == "limit.request_size"


def test_body_just_under_the_limit_is_read(acme: httpx.Client, settings: Settings) -> None:
    padding = settings.max_request_bytes - 200
    body = b'{"program": "x"' + b" " * padding + b"}"
    r = acme.post("/v1/programs", content=body)
    assert r.status_code == 422
    assert error_of(r)["code"] == "program.missing_field"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v2/programs", 404, "route.not_found"),
        ("GET", "/v1", 404, "route.not_found"),
        ("POST", "/healthz", 405, "route.method_not_allowed"),
        ("PATCH", "/v1/programs/x/1", 405, "route.method_not_allowed"),
    ],
)
def test_routing_errors(acme: httpx.Client, method: str, path: str, status: int, code: str) -> None:
    r = acme.request(method, path)
    assert r.status_code == status
    assert error_of(r)["code"] == code


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/programs?limit=0", "query:limit"),
        ("/v1/programs?limit=abc", "query:limit"),
        ("/v1/programs?limit=1001", "query:limit"),
        ("/v1/programs/tiny/one", "path:version"),
        ("/v1/programs/tiny/0", "path:version"),
    ],
)
def test_invalid_parameters(acme: httpx.Client, path: str, field: str) -> None:
    r = acme.get(path)
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "request.invalid"
    assert err["field"] == field
    assert [e["field"] for e in err["errors"]] == [field]


def test_request_id_is_echoed_or_made(anon: httpx.Client) -> None:
    assert anon.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == (
        "abc-123"
    )
    made = anon.get("/healthz", headers={"X-Request-ID": "bad id\twith junk"})
    assert len(made.headers["x-request-id"]) == 32


@pytest.mark.parametrize("dev_mode", [False, True])
def test_unexpected_error_is_a_500_with_a_request_id(
    redis_client: redis.Redis,
    settings: Settings,
    dev_mode: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(settings.model_copy(update={"dev_mode": dev_mode}))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    client = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="sgflow.service"):
        r = client.get("/boom")
    assert r.status_code == 500
    err = error_of(r)
    assert err["code"] == "internal"
    assert err["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text
    assert ("secret internals" in r.text) is dev_mode
    logged = [rec for rec in caplog.records if rec.getMessage() == "unhandled error"]
    assert logged and logged[0].exc_info is not None
    assert getattr(logged[0], "request_id", None) == err["request_id"]


def test_access_log_line_per_request(acme: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sgflow.service.access"):
        r = acme.get("/v1/programs", headers={"X-Request-ID": "log-me"})
        deadline = time.monotonic() + 2  # the server thread logs after the response is sent
        while True:
            lines = [rec for rec in caplog.records if getattr(rec, "request_id", "") == "log-me"]
            if lines or time.monotonic() > deadline:
                break
            time.sleep(0.01)
    assert len(lines) == 1
    line = lines[0]
    assert (line.method, line.path, line.status, line.tenant) == (  # type: ignore[attr-defined]
        "GET",
        "/v1/programs",
        r.status_code,
        "acme",
    )


def openai_error_of(response: httpx.Response) -> dict[str, object]:
    """The ``error`` of an answer on an OpenAI path: OpenAI's keys and sgflow's code."""
    error: dict[str, object] = response.json()["error"]
    assert {"message", "type", "param", "code", "sgflow_code", "field", "hint"} <= set(error)
    return error


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "param"),
    [
        ("GET", "/v1/models", None, 401, "missing_api_key", "authorization"),
        ("POST", "/v1/chat/completions", None, 401, "missing_api_key", "authorization"),
    ],
)
def test_openai_paths_refuse_a_missing_key_in_openais_shape(
    anon: httpx.Client, method: str, path: str, body: object, status: int, code: str, param: str
) -> None:
    r = anon.request(method, path, json=body)
    assert r.status_code == status
    error = openai_error_of(r)
    assert (error["code"], error["type"], error["param"]) == (code, "authentication_error", param)
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "code", "param"),
    [
        ("GET", "/v1/models/no-such-model", None, 404, "model_not_found", "model"),
        ("GET", "/v1/models/program:BAD NAME", None, 404, "model_not_found", "model"),
        ("POST", "/v1/chat/completions", b"{", 400, "invalid_json", None),
        ("POST", "/v1/chat/completions", b'{"model": "m", "messages": []}', 400, None, "messages"),
        (
            "POST",
            "/v1/responses",
            b'{"model": "m", "input": "hi", "temperature": 5}',
            400,
            None,
            "temperature",
        ),
        (
            "POST",
            "/v1/chat/completions",
            b'{"model": "program:nope@1", "messages": [{"role": "user", "content": "hi"}]}',
            404,
            "model_not_found",
            "model",
        ),
    ],
)
def test_openai_paths_answer_errors_in_openais_shape(
    acme: httpx.Client,
    method: str,
    path: str,
    content: bytes | None,
    status: int,
    code: str | None,
    param: str | None,
) -> None:
    r = acme.request(method, path, content=content)
    assert r.status_code == status, r.text
    error = openai_error_of(r)
    assert error["param"] == param
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    if code is not None:
        assert error["code"] == code
    assert r.headers["x-should-retry"] == "false"


def test_an_oversized_openai_body_is_refused_in_openais_shape(
    acme: httpx.Client, settings: Settings
) -> None:
    r = acme.post("/v1/responses", content=b" " * (settings.max_request_bytes + 1))
    assert r.status_code == 413
    error = openai_error_of(r)
    assert (error["sgflow_code"], error["limit"]) == (
        "limit.request_size",
        settings.max_request_bytes,
    )


def test_models_lists_programs_without_an_engine_model_list(acme: httpx.Client) -> None:
    """The fake engine has no ``/v1/models``: the list still answers, with the programs."""
    program = {
        "program": "listed-as-model",
        "version": 3,
        "steps": [{"id": "a", "user": "hi", "gen": {"max_tokens": 4}}],
    }
    assert acme.post("/v1/programs", json=program).status_code in (200, 201)
    body = acme.get("/v1/models").json()
    assert body["object"] == "list" and body["has_more"] is False
    (listed,) = [m for m in body["data"] if m["id"] == "program:listed-as-model@3"]
    assert (listed["object"], listed["owned_by"]) == ("model", "acme")
    assert acme.get("/v1/models/program:listed-as-model@3").json()["id"] == (
        "program:listed-as-model@3"
    )
