"""The Celery app: Redis broker, at-least-once delivery, one run per task.

Celery's message only says "start run X"; the run store is the truth (see ``runner.py``).
Delivery settings for "never lost": ``acks_late`` (ack after the task, not before),
``reject_on_worker_lost`` (a killed worker's message goes back to the queue), prefetch 1
(a worker holds at most one unacked message), and a broker visibility timeout above the hard
time limit, set for every place Celery reads it, so Redis does not redeliver a message
whose task is still legitimately running.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import Celery

__all__ = ["QUEUE", "TASK_RUN", "TASK_START", "make_celery", "queue_name", "worker_id"]


def queue_name(prefix: str) -> str:
    """The Celery queue of a deployment: its key prefix + ``runs`` (``sgflow:runs``)."""
    return f"{prefix}runs"


QUEUE = queue_name(os.environ.get("SGFLOW_PREFIX", "sgflow:"))
TASK_RUN = "sgflow.run"
TASK_START = "sgflow.batch_start"  # warms a batch's prefix, then fans its lines out


def make_celery(
    redis_url: str | None = None,
    *,
    visibility_timeout_s: int = 3600,
    hard_time_limit_s: int = 1800,
) -> Celery:
    """A configured app; raises ``ValueError`` when the hard time limit is not below the
    visibility timeout (a long task would then be delivered twice while running)."""
    if hard_time_limit_s >= visibility_timeout_s:
        raise ValueError(
            f"the hard time limit ({hard_time_limit_s}s) must be below the broker visibility "
            f"timeout ({visibility_timeout_s}s)"
        )
    url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    app = Celery("sgflow", broker=url)
    transport = {"visibility_timeout": visibility_timeout_s}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        visibility_timeout=visibility_timeout_s,
        task_time_limit=hard_time_limit_s,
        task_soft_time_limit=max(1, hard_time_limit_s - 30),
        task_default_queue=QUEUE,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def describe(app: Celery) -> dict[str, Any]:
    conf = app.conf
    return {
        "acks_late": conf.task_acks_late,
        "reject_on_worker_lost": conf.task_reject_on_worker_lost,
        "prefetch": conf.worker_prefetch_multiplier,
        "visibility_timeout": conf.broker_transport_options.get("visibility_timeout"),
        "hard_time_limit": conf.task_time_limit,
    }
