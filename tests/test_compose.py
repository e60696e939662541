"""``compose.yaml`` (no docker engine here): it parses, has the production topology, keeps
Redis durable, every sgflow command in it exists in the CLI, and every process reads the same
environment."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from sgflow.cli import build_parser

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return list(cmd) if isinstance(cmd, list) else shlex.split(cmd)


def test_topology(compose: dict[str, Any]) -> None:
    s = services(compose)
    assert set(s) == {"redis", "sglang", "engine", "router", "api", "worker", "flower"}
    assert s["sglang"]["profiles"] == ["gpu"] and s["engine"]["profiles"] == ["cpu"]
    assert s["sglang"]["image"].startswith("lmsysorg/sglang")
    gpu = s["sglang"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert command(s["sglang"])[:3] == ["python", "-m", "sglang.launch_server"]
    assert s["worker"]["deploy"]["replicas"] >= 1
    for name in ("engine", "router", "api", "worker", "flower"):
        assert s[name]["build"] == ".", name
    assert (ROOT / "Dockerfile").is_file()
    for name in ("api", "worker", "flower"):
        assert s[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_redis_is_durable(compose: dict[str, Any]) -> None:
    redis = services(compose)["redis"]
    flags = " ".join(command(redis))
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert flag in flags
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-data" in compose["volumes"]


@pytest.mark.parametrize(
    ("service", "probe"),
    [
        ("api", "/healthz"),
        ("engine", "/health"),
        ("sglang", "/health"),
        ("router", "/readiness"),
        ("redis", "ping"),
    ],
)
def test_healthchecks(compose: dict[str, Any], service: str, probe: str) -> None:
    assert probe in " ".join(services(compose)[service]["healthcheck"]["test"])


def test_every_sgflow_command_exists_in_the_cli(compose: dict[str, Any]) -> None:
    parser = build_parser()
    seen = set()
    for name, service in services(compose).items():
        argv = command(service)
        if argv[0] == "sgflow":
            args = parser.parse_args(argv[1:])  # exits (fails the test) on an unknown flag
            seen.add(args.command)
        elif argv[0] == "celery":
            assert argv[1:3] == ["-A", "sgflow.workers.tasks"], name
            import sgflow.workers.tasks as tasks

            assert tasks.app.main == "sgflow"
    assert seen == {"engine", "serve", "worker"}


def test_router_command_parses_with_sglang_router(compose: dict[str, Any]) -> None:
    """The router's command line, with compose's and the shell's substitutions done, is
    accepted by sglang-router's own argument parser."""
    from sglang_router.launch_router import parse_router_args

    router = services(compose)["router"]
    argv = command(router)
    assert argv[:2] == ["sh", "-c"]
    env = {k: v.split(":-", 1)[1].rstrip("}") for k, v in router["environment"].items()}
    line = argv[2].replace("$$", "$")
    for name, value in env.items():
        line = line.replace(f'"${name}"', value).replace(f"${name}", value)
    words = shlex.split(line)
    assert words[:4] == ["exec", "python", "-m", "sglang_router.launch_router"]
    args = parse_router_args(words[4:])
    assert args.policy == "cache_aware"
    assert args.worker_urls == ["http://engine:30000"]
    assert args.port == 30100


def test_environment_is_consistent(compose: dict[str, Any]) -> None:
    s = services(compose)
    envs = {name: s[name]["environment"] for name in ("api", "worker", "flower")}
    for name, env in envs.items():
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert env["SGFLOW_PREFIX"] == "sgflow:", name
        # the workers send runs to the router; the API checks it and the engines behind it
        assert env["SGFLOW_ROUTER_URL"] == "http://router:30100", name
    router = s["router"]["environment"]
    assert envs["api"]["SGFLOW_ENGINE_URLS"] == router["SGFLOW_ROUTER_WORKER_URLS"]
    assert len({env["SGFLOW_PREFIX"] for env in envs.values()}) == 1


def test_every_variable_is_a_setting_by_its_canonical_name(compose: dict[str, Any]) -> None:
    """No deprecated name anywhere in the file; every SGFLOW_* variable given to an sgflow
    process is one the settings read (the router's are compose's own)."""
    from sgflow.config_cli import OTHER_VARIABLES
    from sgflow.settings import DEPRECATED, Settings, env_names

    text = (ROOT / "compose.yaml").read_text()
    for old in DEPRECATED:
        assert re.search(rf"\b{old}\b", text) is None, old
    canonical = set(env_names().values())
    for name in ("api", "worker", "flower"):
        env = services(compose)[name]["environment"]
        for variable in env:
            assert variable in canonical or variable in OTHER_VARIABLES, (name, variable)
        values = {k: v.split(":-", 1)[1].rstrip("}") if ":-" in v else v for k, v in env.items()}
        settings = Settings(**{f: values[v] for f, v in env_names().items() if v in values})
        assert settings.worker_engine_urls == ["http://router:30100"], name
