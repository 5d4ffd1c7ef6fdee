"""A Celery worker's life as the jobs see it: a pool process that dies, and a warm shutdown.

- A pool process killed under a live main process (the job killed it, the OOM killer, its
  hard time limit): the main process hears of it at once (Celery's task_failure with
  WorkerLostError or TimeLimitExceeded) and ends the job's lease, so the sweeper re-queues
  it on its next pass and counts the death, instead of a lease later.
- SIGTERM (to the main process, or to the whole process group): Celery stops taking
  messages and waits for running tasks. Pool processes running a job ignore SIGTERM, so the
  job may finish, for up to JOB_SHUTDOWN_GRACE_SECONDS; then the main process hands every
  job still running back (QUEUED at once, not a worker death), the processors stop at their
  next chunk, and pool processes still busy JOB_SHUTDOWN_HANDBACK_SECONDS later are killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery.signals import (
    celeryd_after_setup,
    task_failure,
    task_postrun,
    task_prerun,
    worker_shutting_down,
)
from celery.worker import state as worker_state
from django.conf import settings
from django.db import connection

from . import metrics
from .services.worker import job_hand_back, job_lease_give_up

logger = logging.getLogger(__name__)

RUN_JOB = "jobs.run_job"
shutting_down = threading.Event()  # in the main process: a shutdown has begun
hostname = ""  # in the main process: this worker's name, which claims write into the row


@celeryd_after_setup.connect
def _remember_hostname(sender=None, **_) -> None:
    global hostname
    hostname = str(sender)


def running_jobs() -> list[tuple[str, int | None]]:
    """(job id, pool process id) of every job this worker's pool is running."""
    return [(str(request.args[0]), request.worker_pid) for request in list(worker_state.active_requests)
            if request.name == RUN_JOB and request.args]


@task_failure.connect
def _pool_process_lost(sender=None, args=None, exception=None, **_) -> None:
    """In the main process: a pool process died while running a job."""
    if getattr(sender, "name", None) != RUN_JOB or not args:
        return
    if not isinstance(exception, WorkerLostError | TimeLimitExceeded):
        return
    metrics.pool_process_lost_recorded(cause="time_limit" if isinstance(exception, TimeLimitExceeded) else "lost")
    worker = getattr(sender.request, "hostname", None) or hostname
    # Off the main process's event loop: a database that is away must not stall the consumer.
    threading.Thread(target=_after_pool_process_lost, args=(str(args[0]), worker, exception),
                     name="pool-process-lost", daemon=True).start()


def _after_pool_process_lost(job_id: str, worker: str, exception: BaseException) -> None:
    try:
        if shutting_down.is_set():
            job_hand_back(job_id=job_id, worker=worker, reason="handed back: worker shutting down")
        elif job_lease_give_up(job_id=job_id, worker=worker):
            logger.warning("job.pool_process_lost job_id=%s worker=%s: %s", job_id, worker, exception)
    except Exception:  # the lease runs out by itself all the same
        logger.warning("job.pool_process_lost_unrecorded job_id=%s", job_id, exc_info=True)
    finally:
        connection.close()


@worker_shutting_down.connect
def _on_shutting_down(sender=None, **_) -> None:
    """In the main process: a warm (or cold) shutdown begins."""
    if shutting_down.is_set():
        return
    shutting_down.set()
    threading.Thread(target=_drain, args=(hostname or str(sender),), name="shutdown-grace", daemon=True).start()


def _drain(worker: str) -> None:
    """Lets running jobs finish for up to the grace period, then hands them back."""
    deadline = time.monotonic() + settings.JOB_SHUTDOWN_GRACE_SECONDS
    while running_jobs() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = running_jobs()
    if not left:
        return
    logger.warning("worker.shutdown_grace_over worker=%s handing back %d job(s)", worker, len(left))
    try:
        for job_id, _ in left:
            job_hand_back(job_id=job_id, worker=worker, reason="handed back: worker shutting down")
    except Exception:  # the lease runs out by itself all the same
        logger.warning("worker.hand_back_failed worker=%s", worker, exc_info=True)
    finally:
        connection.close()
    deadline = time.monotonic() + settings.JOB_SHUTDOWN_HANDBACK_SECONDS
    while running_jobs() and time.monotonic() < deadline:
        time.sleep(0.2)
    for job_id, pid in running_jobs():
        # A processor that does not reach its next chunk (stuck in one call): its job is
        # queued again already, so ending its process loses nothing.
        if pid:
            logger.warning("worker.pool_process_killed job_id=%s pid=%s", job_id, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- in each pool process ---------------------------------------------------------------------

busy = threading.Event()  # in a pool process: a task is running
idle_sigterm = None  # in a pool process: the SIGTERM handler billiard installed, for when idle


@task_prerun.connect
def _task_started(**_) -> None:
    global idle_sigterm
    busy.set()
    # Installed at the first task, not at process start: billiard installs its own SIGTERM
    # handler after the worker_process_init signal.
    if idle_sigterm is None:
        idle_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)


@task_postrun.connect
def _task_ended(**_) -> None:
    busy.clear()


def _on_sigterm(signum, frame) -> None:
    """A SIGTERM to the worker's process group reaches pool processes too: a busy one keeps
    working (the main process decides when its job is handed back); an idle one exits."""
    if busy.is_set():
        logger.info("worker.sigterm_while_busy pid=%s: the main process decides when its job is handed back",
                    os.getpid())
        return
    if callable(idle_sigterm):
        idle_sigterm(signum, frame)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
