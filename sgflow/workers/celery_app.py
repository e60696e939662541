"""The Celery app: Redis broker, at-least-once delivery, one run per task.

Celery's message only says "start run X"; the run store is the truth (see ``runner.py``).
Delivery settings for "never lost": ``acks_late`` (ack after the task, not before),
``reject_on_worker_lost`` (a killed worker's message goes back to the queue), prefetch 1
(a worker holds at most one unacked message), and a broker visibility timeout above the hard
time limit, set for every place Celery reads it, so Redis does not redeliver a message
whose task is still legitimately running.

Time limits: ``sgflow worker`` runs Celery's **threads** pool, which ignores
``task_time_limit``; the runner's own watchdog enforces the hard limit in every pool (the run
fails with ``run.time_limit``). Celery's ``task_time_limit`` stays as a backstop for the
prefork pool, halfway between the hard limit and the visibility timeout: after the watchdog,
before a redelivery. There is no soft limit (its exception would land in arbitrary code).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from celery import Celery

if TYPE_CHECKING:
    from sgflow.settings import Settings

__all__ = [
    "DEFAULT_BROKER",
    "TASK_RUN",
    "TASK_START",
    "celery_from",
    "make_celery",
    "queue_name",
    "worker_id",
]

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
TASK_RUN = "sgflow.run"
TASK_START = "sgflow.batch_start"  # warms a batch's prefix, then fans its lines out


def queue_name(prefix: str) -> str:
    """The Celery queue of a deployment: its key prefix + ``runs`` (``sgflow:runs``)."""
    return f"{prefix}runs"


def make_celery(
    redis_url: str | None = None,
    *,
    prefix: str = "sgflow:",
    visibility_timeout_s: int = 3600,
    hard_time_limit_s: int = 1800,
) -> Celery:
    """A configured app on ``redis_url`` (default :data:`DEFAULT_BROKER`) whose default queue
    is ``queue_name(prefix)``. Raises ``ValueError`` when the hard time limit is not below the
    visibility timeout (a long task would then be delivered twice while running)."""
    if hard_time_limit_s >= visibility_timeout_s:
        raise ValueError(
            f"the hard time limit ({hard_time_limit_s}s) must be below the broker visibility "
            f"timeout ({visibility_timeout_s}s)"
        )
    app = Celery("sgflow", broker=redis_url or DEFAULT_BROKER)
    transport = {"visibility_timeout": visibility_timeout_s}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        visibility_timeout=visibility_timeout_s,
        task_time_limit=hard_time_limit_s + (visibility_timeout_s - hard_time_limit_s) // 2,
        task_soft_time_limit=None,
        task_default_queue=queue_name(prefix),
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def celery_from(settings: Settings) -> Celery:
    """:func:`make_celery` with the broker, queue and limits of ``settings``."""
    return make_celery(
        settings.redis_url,
        prefix=settings.redis_prefix,
        visibility_timeout_s=settings.celery_visibility_timeout_s,
        hard_time_limit_s=settings.celery_hard_time_limit_s,
    )


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def describe(app: Celery) -> dict[str, Any]:
    """The delivery settings Celery will use, as a worker logs them at start."""
    conf = app.conf
    return {
        "queue": conf.task_default_queue,
        "acks_late": conf.task_acks_late,
        "reject_on_worker_lost": conf.task_reject_on_worker_lost,
        "prefetch": conf.worker_prefetch_multiplier,
        "visibility_timeout": conf.broker_transport_options.get("visibility_timeout"),
        "task_time_limit": conf.task_time_limit,
    }
