"""Every Celery task of the platform, each a thin caller of one runner or service function.

JSON arguments only (ids, never objects). Each task names its queue, acknowledges late and
has soft and hard time limits; a job's run message carries its processor's own limits.
"""

from __future__ import annotations

import logging
import socket
from enum import StrEnum

from celery import shared_task
from celery.signals import task_postrun, worker_init, worker_process_init
from django.db import close_old_connections
from django.urls import get_resolver

import storage

from . import runner, sweeper

logger = logging.getLogger(__name__)


class Queue(StrEnum):
    """Every queue by name; settings.CELERY_TASK_ROUTES sends each task to one."""

    JOBS = "jobs"
    # Parked messages of dead jobs. No worker consumes it by default; the DeadLetter rows
    # are the record operators replay from.
    DEAD_LETTER = "dead-letter"
    MAINTENANCE = "maintenance"


@worker_init.connect
def _warm_up_worker(**_) -> None:
    """Before the pool forks: build the URLconf's reverse table, which a job's COMPLETED
    notification needs for its result link; otherwise each pool process builds its own."""
    get_resolver().reverse_dict  # noqa: B018


@worker_process_init.connect
def _warm_up_worker_process(**_) -> None:
    """Each prefork child builds its S3 client before its first job, not during it."""
    try:
        storage.warm_up()
    except Exception:  # a cold start is slower, never fatal
        logger.warning("worker.warm_up_failed", exc_info=True)


@task_postrun.connect
def _close_old_connections(**_) -> None:
    """After each task, what Django does after each request: close connections that broke
    or outlived their maximum age, keep the rest."""
    close_old_connections()


@shared_task(name="jobs.run_job", bind=True, queue=Queue.JOBS, acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=600, time_limit=660, max_retries=None)
def run_job(self, job_id: str) -> str:
    outcome, delay = runner.job_run_task(job_id=job_id, worker=self.request.hostname or socket.gethostname())
    if delay is not None:
        # The attempt is recorded as RETRYING; the same message comes back after the backoff.
        raise self.retry(countdown=delay)
    return outcome


@shared_task(name="jobs.dead_letter", queue=Queue.DEAD_LETTER, acks_late=True, soft_time_limit=10, time_limit=20)
def dead_letter(job_id: str, reason: str) -> str:
    """The body of a parked message. Running it only logs: replay goes through DeadLetter rows."""
    logger.warning("job.dead_letter job_id=%s reason=%s", job_id, reason)
    return job_id


@shared_task(name="jobs.sweep", queue=Queue.MAINTENANCE, acks_late=True, ignore_result=True,
             soft_time_limit=120, time_limit=180)
def sweep() -> dict:
    return sweeper.sweep()
