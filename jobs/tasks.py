"""Every Celery task of the platform, each a thin caller of one runner or service function.

JSON arguments only (ids, never objects). Each task acknowledges late and has soft and hard
time limits (a job's run message carries its processor's own); settings.CELERY_TASK_ROUTES
sends each to its queue: jobs, maintenance (beat's sweep and clean-ups; the sweeper process,
`manage.py sweep --loop`, recovers jobs without it) or dead-letter (parked messages no worker
consumes).
"""

from __future__ import annotations

import logging
import random
import socket

from celery import shared_task
from celery.signals import task_postrun, worker_init, worker_process_init
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.urls import get_resolver

import storage

from . import lifecycle, runner, sweeper  # noqa: F401  (lifecycle: the worker's signal handlers)
from .isolation.sandbox import pool as isolation_pool
from .services.maintenance import retention_prune, uploads_abort_abandoned

logger = logging.getLogger(__name__)


@worker_init.connect
def _warm_up_worker(**_) -> None:
    """Before the pool forks: build the URLconf's reverse table, which a job's COMPLETED
    notification needs for its result link; otherwise each pool process builds its own."""
    get_resolver().reverse_dict  # noqa: B018


@worker_process_init.connect
def _warm_up_worker_process(**_) -> None:
    """Each prefork child builds its S3 client and starts its processor child before its
    first job, not during it."""
    try:
        storage.warm_up()
        isolation_pool().warm_up()
    except Exception:  # a cold start is slower, never fatal
        logger.warning("worker.warm_up_failed", exc_info=True)


@task_postrun.connect
def _close_old_connections(**_) -> None:
    """After each task, what Django does after each request: close connections that broke
    or outlived their maximum age, keep the rest."""
    close_old_connections()


def database_retry_delay(retries: int) -> float:
    """Backoff for a message that met the database away: doubling from 1 s, capped, with jitter."""
    ceiling = min(settings.JOB_DB_RETRY_BACKOFF_MAX, 2.0 ** retries)
    return round(random.uniform(ceiling / 2, ceiling), 3)


# Not rejected when its pool process dies: a message given back would find the job still
# PROCESSING and be dropped. The job's lease recovers it instead; jobs.lifecycle ends the
# lease at once when the main process sees its pool process die.
@shared_task(name="jobs.run_job", bind=True, acks_late=True, reject_on_worker_lost=False,
             soft_time_limit=600, time_limit=660, max_retries=None)
def run_job(self, job_id: str) -> str:
    try:
        outcome, delay = runner.job_run_task(job_id=job_id, worker=self.request.hostname or socket.gethostname())
    except DatabaseError as exc:
        # The database is away (the claim, or recording the attempt, failed): the message
        # comes back later instead of being acknowledged and lost.
        logger.warning("job.database_unavailable job_id=%s retries=%s: %s", job_id, self.request.retries, exc)
        raise self.retry(countdown=database_retry_delay(self.request.retries)) from None
    if delay is not None:
        # The attempt is recorded as RETRYING, or the message came before its retry was due:
        # the same message comes back after the delay.
        raise self.retry(countdown=delay)
    return outcome


@shared_task(name="jobs.dead_letter", acks_late=True, soft_time_limit=10, time_limit=20)
def dead_letter(job_id: str, reason: str) -> str:
    """The body of a parked message. Running it only logs: replay goes through DeadLetter rows."""
    logger.warning("job.dead_letter job_id=%s reason=%s", job_id, reason)
    return job_id


@shared_task(name="jobs.sweep", acks_late=True, ignore_result=True,
             soft_time_limit=120, time_limit=180)
def sweep() -> dict:
    return sweeper.sweep()


@shared_task(name="jobs.abort_abandoned_uploads", acks_late=True, ignore_result=True,
             soft_time_limit=300, time_limit=360)
def abort_abandoned_uploads() -> dict:
    outcome = uploads_abort_abandoned()
    return {"aborted": outcome.aborted, "sessions": outcome.sessions, "errors": len(outcome.errors)}


# The budget ends the run before the soft limit; the next hourly run goes on where it stopped.
@shared_task(name="jobs.prune", acks_late=True, ignore_result=True,
             soft_time_limit=settings.PRUNE_MAX_SECONDS + 120, time_limit=settings.PRUNE_MAX_SECONDS + 180)
def prune() -> dict:
    report = retention_prune()
    return {"jobs": report.jobs, "objects": report.objects, "dead_letters": report.dead_letters,
            "task_results": report.task_results, "errors": len(report.errors), "finished": report.finished}
