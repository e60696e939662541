"""Settings: defaults, the environment, and refusal of unsafe combinations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sgflow.service import Settings, create_app


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("REDIS_URL", "SGFLOW_REDIS_URL", "SGFLOW_ENGINE_URLS"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.redis_url is None
    assert s.engine_urls == ["http://127.0.0.1:30000"]
    assert s.max_request_bytes == 1 << 20
    assert s.max_json_depth == 128
    assert s.max_concurrent_runs_per_tenant == 16
    assert s.max_batch_size == 10_000
    assert (s.celery_visibility_timeout_s, s.celery_hard_time_limit_s) == (3600, 1800)
    assert s.dev_mode is False


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SGFLOW_REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://db:6379/1")
    monkeypatch.setenv("SGFLOW_ENGINE_URLS", "http://a:30000/, http://b:30000")
    monkeypatch.setenv("SGFLOW_MAX_BATCH_SIZE", "50")
    monkeypatch.setenv("SGFLOW_MAX_SCHEMA_DEPTH", "3")  # the grammar limits' variable: ignored
    s = Settings()
    assert s.redis_url == "redis://db:6379/1"
    assert s.engine_urls == ["http://a:30000", "http://b:30000"]
    assert s.max_batch_size == 50
    monkeypatch.setenv("SGFLOW_REDIS_URL", "redis://other:6379/0")
    monkeypatch.setenv("SGFLOW_ENGINE_URLS", '["http://c:1"]')
    s = Settings()
    assert s.redis_url == "redis://other:6379/0"
    assert s.engine_urls == ["http://c:1"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"celery_hard_time_limit_s": 3600, "celery_visibility_timeout_s": 3600},
            "must be below celery_visibility_timeout_s",
        ),
        (
            {"celery_hard_time_limit_s": 7200, "celery_visibility_timeout_s": 3600},
            "two workers run it",
        ),
        ({"engine_urls": ["127.0.0.1:30000"]}, "must start with http"),
        ({"engine_urls": []}, "at least 1 item"),
        ({"max_request_bytes": 10}, "greater than or equal to 1024"),
        ({"max_json_depth": 1000}, "less than or equal to 256"),
        ({"redis_prefix": "has space"}, "should match pattern"),
        ({"max_requests_bytes": 10}, "Extra inputs are not permitted"),
    ],
)
def test_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_app_needs_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("SGFLOW_REDIS_URL", raising=False)
    with pytest.raises(ValueError, match="no Redis: set REDIS_URL"):
        create_app(Settings())


def test_prefix_has_the_workers_name_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SGFLOW_REDIS_PREFIX", raising=False)
    monkeypatch.setenv("SGFLOW_PREFIX", "prod:")  # what the workers read
    assert Settings().redis_prefix == "prod:"
    monkeypatch.setenv("SGFLOW_REDIS_PREFIX", "api:")
    assert Settings().redis_prefix == "api:"
