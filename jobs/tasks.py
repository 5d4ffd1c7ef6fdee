"""Celery tasks: thin callers of the job services. JSON arguments only (ids, never objects)."""

from __future__ import annotations

import logging
import socket
from enum import StrEnum

from celery import shared_task
from celery.exceptions import Retry
from celery.signals import task_postrun, worker_init, worker_process_init
from django.db import close_old_connections

from . import runner

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
    """Before the pool forks: load the web pages' URLconf and its reverse table, which a
    job's COMPLETED notification needs for its result link (notify.download_path);
    otherwise each new pool process pays for them on its first finished job."""
    from django.urls import get_resolver

    from .notify import WEB_URLCONF

    get_resolver(WEB_URLCONF).reverse_dict  # noqa: B018


@worker_process_init.connect
def _warm_up_worker_process(**_) -> None:
    """Each prefork child builds its S3 client before its first job, not during it (the
    processors are already imported, through runner, before the fork)."""
    import storage

    try:
        storage.warm_up()
    except Exception:  # a cold start is slower, never fatal
        logger.warning("worker.warm_up_failed", exc_info=True)


@task_postrun.connect
def _close_old_connections(**_) -> None:
    """After each task, what Django does after each request: close connections that broke
    or outlived DB_CONN_MAX_AGE, keep the rest (see CELERY_DB_REUSE_MAX in settings)."""
    close_old_connections()


def _worker_name(task) -> str:
    return f"{task.request.hostname or socket.gethostname()}"


@shared_task(name="jobs.run_job", bind=True, acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=600, time_limit=660, max_retries=None)
def run_job(self, job_id: str, input_hint: list | None = None) -> str:
    worker = _worker_name(self)
    try:
        return runner.job_run(job_id=job_id, worker=worker, input_hint=input_hint)
    except Retry:
        raise
    except Exception as exc:
        # Transient (storage, network, database) or unexpected: the attempt is recorded as
        # RETRYING with a backoff, or DEAD when attempts are used up. An unexpected error
        # (a bug, most likely) is logged with its traceback; the dead letter keeps it too.
        if not isinstance(exc, runner.TRANSIENT_ERRORS):
            logger.exception("job.unexpected_error job_id=%s", job_id)
        delay = runner.job_handle_transient(job_id=job_id, error=exc, worker=worker)
        if delay is None:
            return "DEAD"
        raise self.retry(countdown=delay, exc=exc) from exc


@shared_task(name="jobs.dead_letter")
def dead_letter(job_id: str, reason: str) -> str:
    """The body of a parked message. Running it only logs: replay goes through DeadLetter rows."""
    logger.warning("job.dead_letter job_id=%s reason=%s", job_id, reason)
    return job_id


@shared_task(name="jobs.sweep", ignore_result=True)
def sweep() -> dict:
    from .sweeper import sweep as do_sweep

    return do_sweep()


@shared_task(name="jobs.noop")
def noop(x: int = 0) -> int:
    """The baseline for bench/throughput.py: a task that does nothing."""
    return x
