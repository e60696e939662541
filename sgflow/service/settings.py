"""The service's settings: one :class:`Settings`, read from ``SGFLOW_*`` environment variables.

Validators refuse unsafe combinations at start-up instead of failing later under load: a
Celery hard time limit at or above the broker's visibility timeout would let Redis hand a
still-running task to a second worker, so it is refused here.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Service settings. Each field ``x`` is read from ``SGFLOW_X`` (case-insensitive);
    ``redis_url`` also from ``REDIS_URL``. Unknown keyword arguments are refused
    (``extra="forbid"``), unrelated ``SGFLOW_*`` variables are ignored.

    Raises ``pydantic.ValidationError`` for a value out of range or an unsafe combination.
    """

    model_config = SettingsConfigDict(env_prefix="SGFLOW_", extra="forbid", frozen=True)

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SGFLOW_REDIS_URL", "REDIS_URL", "redis_url"),
        description="Redis for runs, programs and keys; default None: `sgflow up` starts an "
        "embedded one (create_app refuses to start without one)",
    )
    redis_prefix: str = Field(
        default="sgflow:",
        validation_alias=AliasChoices("SGFLOW_REDIS_PREFIX", "SGFLOW_PREFIX", "redis_prefix"),
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="prefix of every Redis key the service writes (also `SGFLOW_PREFIX`, the "
        "name the workers read); default `sgflow:`",
    )
    engine_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:30000"],
        min_length=1,
        description="SGLang engines (native API); a JSON list or comma-separated; "
        "default http://127.0.0.1:30000",
    )
    engine_health_timeout_s: float = Field(
        default=1.0, gt=0, le=30, description="per-engine /health timeout in /readyz; default 1"
    )
    max_request_bytes: int = Field(
        default=1 << 20, ge=1024, description="largest request body; default 1 MiB"
    )
    max_json_depth: int = Field(
        default=128,
        ge=8,
        le=256,
        description="nesting of arrays/objects in a JSON body or JSONL line (400 "
        "`limit.json_depth`); default 128, see sgflow.jsonbounds",
    )
    body_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="a request body must arrive within this many seconds (408); default 120",
    )
    max_concurrent_runs_per_tenant: int = Field(default=16, ge=1, description="default 16")
    max_batch_size: int = Field(default=10_000, ge=1, description="inputs per batch; default 10000")
    max_batch_bytes: int = Field(
        default=64 << 20,
        ge=1024,
        description="largest body of POST /v1/batches (JSON or JSONL), which is exempt from "
        "max_request_bytes; default 64 MiB",
    )
    result_ttl_s: int = Field(
        default=7 * 24 * 3600, ge=60, description="how long finished runs are kept; default 7 days"
    )
    celery_visibility_timeout_s: int = Field(
        default=3600, ge=1, description="broker visibility timeout; default 3600"
    )
    celery_hard_time_limit_s: int = Field(
        default=1800,
        ge=1,
        description="hard limit of one task; must stay below the visibility timeout; default 1800",
    )
    dev_mode: bool = Field(
        default=False,
        description="development conveniences: 500 bodies name the exception type and message "
        "(never a traceback); default False",
    )

    @field_validator("engine_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("engine_urls")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"engine URL {url!r} must start with http:// or https://")
        return [url.rstrip("/") for url in urls]

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.celery_hard_time_limit_s >= self.celery_visibility_timeout_s:
            raise ValueError(
                f"celery_hard_time_limit_s ({self.celery_hard_time_limit_s}) must be below "
                f"celery_visibility_timeout_s ({self.celery_visibility_timeout_s}): otherwise "
                "the broker redelivers a task that is still running, and two workers run it"
            )
        return self
