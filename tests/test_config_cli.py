"""``sgflow config``: every setting, its value (secrets masked), where it came from, and the
warnings; exit 2 on a configuration the processes would refuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import sgflow.settings as settings_module
from sgflow.cli import main
from sgflow.settings import DEPRECATED, Settings, env_names

SECRET = "hunter2-very-secret"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("SGFLOW_") or name.upper() == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.setattr(settings_module, "_warned", set())
    yield


def config(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["config", "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out), out


def rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in data["settings"]}


def test_every_setting_with_its_variable_default_and_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, data, _ = config(capsys)
    assert code == 0 and data["errors"] == []
    by_name = rows(data)
    assert list(by_name) == list(Settings.model_fields)
    for name, variable in env_names().items():
        row = by_name[name]
        assert row["variable"] == variable
        assert row["origin"] == "default"
        assert row["description"], name
    assert by_name["engine_urls"]["value"] == ["http://127.0.0.1:30000"]
    assert by_name["engine_urls"]["deprecated_variables"] == ["SGFLOW_ENGINE_URL"]
    assert by_name["celery_hard_time_limit_s"]["value"] == 1800
    assert any("REDIS_URL is not set" in w for w in data["warnings"])


def test_origins_env_deprecated_and_cli_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SGFLOW_LEASE_S", "12")
    monkeypatch.setenv("SGFLOW_ENGINE_URL", "http://old-engine:30000")
    monkeypatch.setenv("SGFLOW_HARD_TIME_LIMIT_S", "600")
    code, data, _ = config(capsys, "--set", "max_attempts=5")
    assert code == 0, data["errors"]
    by_name = rows(data)
    assert (by_name["lease_s"]["value"], by_name["lease_s"]["origin"]) == (
        12.0,
        "env SGFLOW_LEASE_S",
    )
    assert by_name["engine_urls"]["value"] == ["http://old-engine:30000"]
    assert by_name["engine_urls"]["origin"] == "deprecated env SGFLOW_ENGINE_URL"
    assert (
        by_name["celery_hard_time_limit_s"]["origin"] == "deprecated env SGFLOW_HARD_TIME_LIMIT_S"
    )
    assert (by_name["max_attempts"]["value"], by_name["max_attempts"]["origin"]) == (
        5,
        "CLI flag --set",
    )
    assert "SGFLOW_ENGINE_URL is deprecated: set SGFLOW_ENGINE_URLS instead" in data["warnings"]
    assert (
        "SGFLOW_HARD_TIME_LIMIT_S is deprecated: set SGFLOW_CELERY_HARD_TIME_LIMIT_S instead"
        in data["warnings"]
    )


def test_a_deprecated_name_beside_the_canonical_one_is_ignored_and_said_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SGFLOW_PREFIX", "new:")
    monkeypatch.setenv("SGFLOW_REDIS_PREFIX", "old:")
    _, data, _ = config(capsys)
    row = rows(data)["redis_prefix"]
    assert (row["value"], row["origin"]) == ("new:", "env SGFLOW_PREFIX")
    assert any(
        w.startswith("SGFLOW_REDIS_PREFIX is deprecated and ignored") for w in data["warnings"]
    )


def test_secrets_are_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://app:{SECRET}@db:6379/0")
    monkeypatch.setenv("SGFLOW_API_KEY", f"sgf_{SECRET}")
    code, data, out = config(capsys)
    assert code == 0
    assert SECRET not in out
    by_name = rows(data)
    assert by_name["redis_url"]["value"] == "redis://app:***@db:6379/0"
    assert by_name["redis_url"]["origin"] == "env REDIS_URL"
    assert by_name["api_key"]["value"] == "**********"


def test_unknown_sgflow_variables_are_flagged_as_typos(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SGFLOW_LEASE_SECONDS", "5")
    monkeypatch.setenv("SGFLOW_ROUTER_POLICY", "cache_aware")  # compose's, not a setting
    _, data, _ = config(capsys)
    typos = [w for w in data["warnings"] if "not a setting" in w]
    assert typos == [
        "SGFLOW_LEASE_SECONDS is not a setting sgflow reads (a typo?); see `sgflow config`"
    ]


def test_an_unsafe_configuration_exits_2_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SGFLOW_CELERY_HARD_TIME_LIMIT_S", "3600")
    monkeypatch.setenv("SGFLOW_VISIBILITY_TIMEOUT_S", "60")
    monkeypatch.setenv("SGFLOW_PREFIX", "has space")
    code, data, _ = config(capsys)
    assert code == 2
    # field errors first (pydantic runs the cross-field check only on valid fields)
    assert data["errors"] == [
        "redis_prefix (from env SGFLOW_PREFIX): String should match pattern "
        "'^[A-Za-z0-9_.:-]{1,64}$'"
    ]
    by_name = rows(data)
    assert by_name["redis_prefix"]["value"] == "has space"  # shown as given, unvalidated
    assert by_name["celery_visibility_timeout_s"]["origin"] == (
        "deprecated env SGFLOW_VISIBILITY_TIMEOUT_S"
    )
    monkeypatch.setenv("SGFLOW_PREFIX", "ok:")
    code, data, _ = config(capsys)
    assert code == 2
    assert data["errors"] == [
        "celery_hard_time_limit_s (SGFLOW_CELERY_HARD_TIME_LIMIT_S=3600) must be below "
        "celery_visibility_timeout_s (SGFLOW_CELERY_VISIBILITY_TIMEOUT_S=60): otherwise the "
        "broker redelivers a task that is still running, and two workers run it"
    ]


def test_a_bad_set_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--set", "no_such_setting=1"]) == 2
    assert "expected FIELD=VALUE" in capsys.readouterr().out


def test_the_table_as_a_user_runs_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SGFLOW_")}
    env |= {"REDIS_URL": f"redis://:{SECRET}@db:6379/0", "SGFLOW_ENGINE_URL": "http://e:1"}
    done = subprocess.run(
        [sys.executable, "-m", "sgflow.cli", "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["setting", "variable", "value", "from"]
    table = {
        line.split()[0]: line.split()[1:] for line in lines[1 : len(Settings.model_fields) + 1]
    }
    assert table["redis_url"] == ["REDIS_URL", "redis://:***@db:6379/0", "env", "REDIS_URL"]
    assert table["engine_urls"] == [
        "SGFLOW_ENGINE_URLS",
        "http://e:1",
        "deprecated",
        "env",
        "SGFLOW_ENGINE_URL",
    ]
    assert table["lease_s"] == ["SGFLOW_LEASE_S", "30.0", "default"]
    assert "warnings:" in lines
    assert "  - SGFLOW_ENGINE_URL is deprecated: set SGFLOW_ENGINE_URLS instead" in lines
    assert SECRET not in done.stdout + done.stderr
    # the settings' own deprecation log line is not repeated on stderr
    assert "deprecated" not in done.stderr


def test_every_deprecated_variable_is_documented_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Configuration") :]
    section = " ".join(section[: section.index("\n## ", 5)].split())
    for variable in env_names().values():
        assert f"`{variable}`" in section, variable
    for old, field in DEPRECATED.items():
        assert f"`{old}` → `{env_names()[field]}`" in section, old
