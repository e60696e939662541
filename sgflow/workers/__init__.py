"""Workers: the Celery app and its tasks, the runner, the reaper loop and batch fan-out.

Every record they read or write goes through :mod:`sgflow.store`. ``celery -A
sgflow.workers.tasks worker`` (what ``sgflow worker`` runs) imports :mod:`.tasks`, which
builds the app from the environment; import it only in a worker process.

- :class:`Runner`: one attempt at one run (claim, resume, execute, finish once);
- :func:`make_celery`, :func:`queue_name`, :data:`TASK_RUN`, :data:`TASK_START`: the Celery
  app and the names the API sends messages with.
"""

from sgflow.workers.celery_app import TASK_RUN, TASK_START, make_celery, queue_name
from sgflow.workers.runner import Runner

__all__ = ["TASK_RUN", "TASK_START", "Runner", "make_celery", "queue_name"]
