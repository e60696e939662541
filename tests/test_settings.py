"""Settings: defaults, the environment, deprecated names, and refusal of unsafe combinations.
One class for every process (the API, the workers, ``sgflow up``, the engine, the CLI)."""

from __future__ import annotations

import ast
import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

import sgflow.settings as settings_module
from sgflow.grammars import Limits, get_limits, set_limits
from sgflow.service import Settings as ServiceSettings
from sgflow.service import create_app
from sgflow.settings import (
    DEPRECATED,
    Settings,
    apply,
    canonical_environ,
    env_name,
    env_names,
    mask,
    redis_warnings,
)

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No setting from the machine's environment, and deprecation warnings not yet given."""
    for name in list(os.environ):
        if name.upper().startswith("SGFLOW_") or name.upper() == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.setattr(settings_module, "_warned", set())
    yield


def test_the_service_still_exports_the_one_settings_class() -> None:
    assert ServiceSettings is Settings
    from sgflow.service.settings import Settings as Old

    assert Old is Settings


def test_defaults() -> None:
    s = Settings()
    assert s.redis_url is None
    assert s.redis_prefix == "sgflow:"
    assert s.engine_urls == ["http://127.0.0.1:30000"]
    assert s.router_url is None
    assert s.max_request_bytes == 1 << 20
    assert s.max_json_depth == 128
    assert s.body_timeout_s == 120
    assert s.max_concurrent_runs_per_tenant == 16
    assert s.max_batch_size == 10_000
    assert (s.celery_visibility_timeout_s, s.celery_hard_time_limit_s) == (3600, 1800)
    assert (s.lease_s, s.max_attempts, s.stale_queued_s) == (30.0, 3, 300.0)
    assert s.dev_mode is False and s.llama_log is False
    assert s.api_url == "http://127.0.0.1:8000" and s.api_key is None


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://db:6379/1")
    monkeypatch.setenv("SGFLOW_ENGINE_URLS", "http://a:30000/, http://b:30000")
    monkeypatch.setenv("SGFLOW_MAX_BATCH_SIZE", "50")
    monkeypatch.setenv("SGFLOW_MAX_SCHEMA_DEPTH", "3")
    monkeypatch.setenv("SGFLOW_LEASE_S", "2.5")
    monkeypatch.setenv("sgflow_max_attempts", "7")
    s = Settings()
    assert s.redis_url == "redis://db:6379/1"
    assert s.engine_urls == ["http://a:30000", "http://b:30000"]
    assert s.max_batch_size == 50 and s.max_schema_depth == 3
    assert s.lease_s == 2.5 and s.max_attempts == 7
    monkeypatch.setenv("SGFLOW_ENGINE_URLS", '["http://c:1"]')
    assert Settings().engine_urls == ["http://c:1"]
    monkeypatch.setenv("SGFLOW_ENGINE_URLS", "http://d:1 http://e:2")  # compose's lists
    assert Settings().engine_urls == ["http://d:1", "http://e:2"]


def test_keywords_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGFLOW_PREFIX", "env:")
    monkeypatch.setenv("SGFLOW_REDIS_PREFIX", "old:")
    assert Settings(redis_prefix="kw:").redis_prefix == "kw:"
    monkeypatch.setenv("SGFLOW_ENGINE_URL", "http://old:1")
    assert Settings(engine_urls=["http://kw:1"]).engine_urls == ["http://kw:1"]


@pytest.mark.parametrize(
    ("old", "value", "field", "expected"),
    [
        ("SGFLOW_ENGINE_URL", "http://w:30000/", "engine_urls", ["http://w:30000"]),
        ("SGFLOW_VISIBILITY_TIMEOUT_S", "7200", "celery_visibility_timeout_s", 7200),
        ("SGFLOW_HARD_TIME_LIMIT_S", "60", "celery_hard_time_limit_s", 60),
        ("SGFLOW_REDIS_PREFIX", "old:", "redis_prefix", "old:"),
        ("SGFLOW_REDIS_URL", "redis://old:6379/0", "redis_url", "redis://old:6379/0"),
    ],
)
def test_a_deprecated_name_still_works_and_warns_once_naming_the_new_one(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    old: str,
    value: str,
    field: str,
    expected: object,
) -> None:
    monkeypatch.setenv(old, value)
    with caplog.at_level(logging.WARNING, logger="sgflow.settings"):
        assert getattr(Settings(), field) == expected
        assert getattr(Settings(), field) == expected
    messages = [r.getMessage() for r in caplog.records if r.name == "sgflow.settings"]
    assert messages == [f"{old} is deprecated: set {env_name(field)} instead"]


def test_the_canonical_name_wins_over_a_deprecated_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SGFLOW_ENGINE_URLS", "http://new:1")
    monkeypatch.setenv("SGFLOW_ENGINE_URL", "http://old:1")
    with caplog.at_level(logging.WARNING, logger="sgflow.settings"):
        assert Settings().engine_urls == ["http://new:1"]
    assert "SGFLOW_ENGINE_URL is deprecated and ignored: SGFLOW_ENGINE_URLS is set" in caplog.text


def test_every_deprecated_name_maps_to_a_field_with_another_name() -> None:
    names = env_names()
    assert set(DEPRECATED.values()) <= set(names)
    assert not set(DEPRECATED) & set(names.values())
    assert env_name("redis_prefix") == "SGFLOW_PREFIX"
    assert env_name("redis_url") == "REDIS_URL"
    assert env_name("celery_hard_time_limit_s") == "SGFLOW_CELERY_HARD_TIME_LIMIT_S"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"celery_hard_time_limit_s": 3600, "celery_visibility_timeout_s": 3600},
            "SGFLOW_CELERY_HARD_TIME_LIMIT_S=3600\\) must be below celery_visibility_timeout_s",
        ),
        (
            {"celery_hard_time_limit_s": 7200, "celery_visibility_timeout_s": 3600},
            "two workers run it",
        ),
        ({"engine_urls": ["127.0.0.1:30000"]}, "must start with http"),
        ({"engine_urls": []}, "at least 1 item"),
        ({"router_url": "router:30100"}, "must start with http"),
        ({"max_request_bytes": 10}, "greater than or equal to 1024"),
        ({"max_json_depth": 1000}, "less than or equal to 256"),
        ({"body_timeout_s": 0}, "greater than 0"),
        ({"redis_prefix": "has space"}, "should match pattern"),
        ({"lease_s": 0}, "greater than 0"),
        ({"max_schema_depth": 0}, "greater than 0"),
        ({"max_requests_bytes": 10}, "Extra inputs are not permitted"),
    ],
)
def test_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_app_needs_redis() -> None:
    with pytest.raises(ValueError, match="no Redis: set REDIS_URL"):
        create_app(Settings())


def test_the_grammar_limits_are_settings_with_the_same_defaults() -> None:
    fields = Settings.model_fields
    for limit in dataclasses.fields(Limits):
        assert limit.name in fields, f"Limits.{limit.name} has no setting"
        assert fields[limit.name].default == limit.default, limit.name
    assert Settings().grammar_limits() == Limits()


def test_apply_installs_the_grammar_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    before = get_limits()
    monkeypatch.setenv("SGFLOW_MAX_SCHEMA_DEPTH", "5")
    monkeypatch.setenv("SGFLOW_ALLOW_RECURSIVE_REFS", "no")
    try:
        apply(Settings())
        assert get_limits().max_schema_depth == 5
        assert get_limits().allow_recursive_refs is False
    finally:
        set_limits(**dataclasses.asdict(before))


def _reads_environment(path: Path) -> bool:
    """Whether the code (not the docstrings) of ``path`` touches ``os.environ``/``getenv``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ("environ", "getenv") for alias in node.names)
        ):
            return True
    return False


def test_no_module_but_the_settings_reads_the_environment() -> None:
    """Every process reads the one Settings; nothing else looks at the environment for a
    setting (``grammars/`` and ``programs/`` stay pure; the cluster hands the environment on
    to its children, ``sgflow config`` lists it; the bench and the peer engines the tests and
    the bench start, ``sgflow/peers/``, have variables of their own)."""
    allowed = {"settings.py", "cluster.py", "config_cli.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "sgflow").rglob("*.py"))
        if path.name not in allowed
        and not {"bench", "peers"} & set(path.parts)
        and _reads_environment(path)
    ]
    assert offenders == []


def test_warnings_name_unwise_combinations() -> None:
    assert any("REDIS_URL is not set" in w for w in Settings().warnings())
    s = Settings(redis_url="redis://x", dev_mode=True, engine_health_timeout_s=5)
    text = " ".join(s.warnings())
    assert "SGFLOW_DEV_MODE" in text and "SGFLOW_ENGINE_HEALTH_TIMEOUT_S=5" in text
    assert Settings(redis_url="redis://x").warnings() == []


def test_workers_use_the_router_when_there_is_one() -> None:
    s = Settings(engine_urls=["http://e1:1", "http://e2:1"])
    assert s.worker_engine_urls == ["http://e1:1", "http://e2:1"]
    routed = s.model_copy(update={"router_url": "http://r:30100"})
    assert routed.worker_engine_urls == ["http://r:30100"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("redis://:hunter2@db:6379/0", "redis://:***@db:6379/0"),
        ("redis://user:p@ss:w@db/0", "redis://user:***@db/0"),
        ("rediss://db:6379/0", "rediss://db:6379/0"),
        (["http://u:pw@e:1", "http://e:2"], ["http://u:***@e:1", "http://e:2"]),
    ],
)
def test_mask_hides_passwords(value: object, shown: object) -> None:
    assert mask(value) == shown


def test_canonical_environ_renames_deprecated_variables() -> None:
    env = {"SGFLOW_ENGINE_URL": "http://a:1", "SGFLOW_PREFIX": "p:", "SGFLOW_REDIS_PREFIX": "q:"}
    assert canonical_environ(env) == {"SGFLOW_ENGINE_URLS": "http://a:1", "SGFLOW_PREFIX": "p:"}


class _FakeConfig:
    """A Redis ``CONFIG GET`` answering from a dict (the machine's Redis has AOF off and
    cannot be reconfigured by a test: it is shared)."""

    def __init__(self, values: dict[str, str] | None) -> None:
        self.values = values

    def config_get(self, pattern: str = "*") -> dict[str, str]:
        import redis

        if self.values is None:
            raise redis.ResponseError("unknown command 'CONFIG'")
        return {pattern: self.values[pattern]} if pattern in self.values else {}


def test_redis_warnings_fake_config() -> None:
    good = {"appendonly": "yes", "maxmemory-policy": "noeviction"}
    assert redis_warnings(_FakeConfig(good)) == []
    bad = redis_warnings(_FakeConfig({"appendonly": "no", "maxmemory-policy": "allkeys-lru"}))
    assert len(bad) == 2 and "without AOF" in bad[0] and "allkeys-lru" in bad[1]
    assert "CONFIG GET refused" in redis_warnings(_FakeConfig(None))[0]


def test_redis_warnings_on_the_machines_redis() -> None:
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        aof = client.config_get("appendonly")["appendonly"]
        found = redis_warnings(client)
    finally:
        client.close()
    assert any("without AOF" in w for w in found) == (aof != "yes")
