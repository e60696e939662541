"""A whole sgflow on one Redis key prefix: a real Celery worker process against a given
engine, the API on a real socket, and clients (and CLI arguments) for two tenants."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import redis

from sgflow.service import KeyStore, Settings, create_app
from tests.service.conftest import REDIS_URL, ServerThread

__all__ = ["Stack"]


class Stack:
    """Tenants ``acme`` and ``globex``: ``*_key`` secrets, ``acme``/``globex`` httpx clients,
    ``acme_cli`` the ``--api``/``--key`` arguments of the CLI."""

    def __init__(
        self,
        engine_url: str,
        *,
        worker_env: dict[str, str] | None = None,
        worker_log: Path | None = None,
    ) -> None:
        self.prefix = f"sgflow-test-{uuid.uuid4().hex[:10]}:"
        self.redis = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        env = {
            **os.environ,
            "REDIS_URL": REDIS_URL,
            "SGFLOW_PREFIX": self.prefix,
            "SGFLOW_ENGINE_URLS": engine_url,
            "SGFLOW_LEASE_S": "5",
            **(worker_env or {}),
        }
        self._log = open(worker_log, "wb") if worker_log else None  # noqa: SIM115 (closed in close())
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "sgflow.cli", "worker", "--concurrency", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log or subprocess.DEVNULL,
        )
        settings = Settings(redis_url=REDIS_URL, redis_prefix=self.prefix, engine_urls=[engine_url])
        self.server = ServerThread(create_app(settings))
        self.url = self.server.__enter__()
        keys = KeyStore(self.redis, prefix=self.prefix)
        self.acme_key = keys.create_key("acme")[1]
        self.globex_key = keys.create_key("globex")[1]
        self.acme = httpx.Client(
            base_url=self.url, timeout=120, headers={"Authorization": f"Bearer {self.acme_key}"}
        )
        self.globex = httpx.Client(
            base_url=self.url, timeout=120, headers={"Authorization": f"Bearer {self.globex_key}"}
        )
        self.acme_cli = ["--api", self.url, "--key", self.acme_key]

    def close(self) -> None:
        self.acme.close()
        self.globex.close()
        self.server.__exit__()
        self.worker.terminate()
        try:
            self.worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.worker.kill()
        if self._log is not None:
            self._log.close()
        for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            self.redis.delete(key)
