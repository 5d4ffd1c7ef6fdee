"""Running one job: claim, heartbeat, run the processor in its child process, record the outcome.

The processor runs in a child of the pool process (jobs.isolation), under CPU-time, memory
and wall-clock limits; this process keeps the heartbeat, writes progress, polls for a
cancel request and stops the child when the job must stop. The Celery task is a thin
wrapper around `job_run_task`; tests call it, or `job_run`, without Celery.

Outcomes: a bad input, bad params, an unstorable result or an exceeded limit is permanent
(FAILED); the object store, the network or the database blinking is transient (RETRYING,
then DEAD); a child that dies unbidden counts as a worker death, as a pool process's does.
A job that does not complete leaves no output object: its output prefix is emptied
before the move that ends the attempt.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, DataError, InterfaceError, OperationalError, connection
from django.utils import timezone

import storage
from processors import get_processor
from processors.base import Cancelled, Processor, ProcessorError

from .errors import TransitionRefused
from .heartbeat import Heartbeat
from .isolation import results
from .isolation.sandbox import Limits, ResourceLimitExceeded, SandboxCrashed, SandboxError, pool
from .models import Job, JobState
from .services import execution
from .services.worker import job_lease_give_up

logger = logging.getLogger(__name__)

# Errors worth another attempt: the object store, the network or the database blinked.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    storage.StorageUnavailable, OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError,
)
# What Sandbox.run raises once its child has finished or been stopped: the child may serve the next job.
SETTLED = (ProcessorError, Cancelled, storage.StorageError, SandboxCrashed, SandboxError)

# A deferred message comes back this much after its retry is due, so that it is not early again
# by the broker's rounding of its countdown.
DEFER_MARGIN = 0.05


def job_limits(processor: Processor) -> Limits:
    """The platform's ceilings, lowered by the processor's own where it sets them."""
    cpu = settings.JOB_CPU_LIMIT_SECONDS
    memory = settings.JOB_MEMORY_LIMIT_MB
    if processor.cpu_limit:
        cpu = min(cpu, processor.cpu_limit)
    if processor.memory_limit_mb:
        memory = min(memory, processor.memory_limit_mb)
    return Limits(cpu_seconds=float(cpu), memory_bytes=int(memory) * 2**20,
                  wall_seconds=float(processor.soft_time_limit))


class Watch:
    """What the pool process does for a running job: progress rows (throttled), and
    whether the job must stop (its lease lost, or a cancel request, polled every
    JOB_CANCEL_CHECK_SECONDS when no progress row said so)."""

    def __init__(self, job: Job, heartbeat: Heartbeat):
        self.job, self.heartbeat = job, heartbeat
        now = time.monotonic()
        # The first progress row is written after one interval of work, not at once: a
        # job that finishes sooner never pays for progress writes it would not show.
        self.last_progress = now
        self.last_check = now

    def on_progress(self, bytes_read: int) -> str | None:
        if self.heartbeat.lost.is_set():
            return "lost"
        now = time.monotonic()
        if now - self.last_progress < settings.JOB_PROGRESS_MIN_INTERVAL:
            return None
        self.last_progress = self.last_check = now
        if execution.job_record_progress(job=self.job, bytes_read=bytes_read):
            return "cancelled"
        return None

    def should_stop(self) -> str | None:
        if self.heartbeat.lost.is_set():
            return "lost"
        now = time.monotonic()
        if now - self.last_check < settings.JOB_CANCEL_CHECK_SECONDS:
            return None
        self.last_check = now
        try:
            return "cancelled" if execution.job_must_stop(job=self.job) else None
        except DatabaseError:
            # The database away is the heartbeat's concern; the job goes on meanwhile.
            logger.warning("job.cancel_check_failed job_id=%s", self.job.id, exc_info=True)
            connection.close()
            return None


def discard_outputs(job: Job) -> None:
    """Deletes what the attempt wrote, while the job is still this worker's (a job taken
    over meanwhile has another writer of the same keys). Best effort: a store that is
    away leaves them for the job's clean-up."""
    try:
        if execution.job_held(job=job):
            storage.delete_prefix(storage.output_bucket(), storage.output_prefix(job.id))
    except (storage.StorageError, DatabaseError):
        logger.warning("job.outputs_not_discarded job_id=%s", job.id, exc_info=True)


def job_run(*, job_id: uuid.UUID | str, worker: str) -> str:
    """Runs one attempt of a job. Returns the state it ended in ("skipped" if it could not
    be claimed); raises transient errors (after recording nothing), see job_attempt."""
    job = execution.job_claim(job_id=job_id, worker=worker)
    if job is None:
        return "skipped"
    return job_attempt(job=job, worker=worker)


def job_attempt(*, job: Job, worker: str) -> str:
    """Runs the attempt of the job this worker claimed (`job` is the row as claimed, and every
    move it makes carries that claim). Returns the state it ended in, or "lost" if the claim
    was replaced meanwhile; raises transient errors for job_handle_transient."""
    actor = f"worker:{worker}"
    logger.info("job.starting job_id=%s type=%s attempt=%s", job.id, job.job_type, job.attempts)
    try:
        return _attempt(job, actor)
    except TransitionRefused as exc:
        logger.info("job.claim_lost job_id=%s worker=%s: %s", job.id, worker, exc)
        return "lost"


def _attempt(job: Job, actor: str) -> str:
    try:
        with Heartbeat(job) as heartbeat:
            return _process(job, heartbeat, actor)
    except Cancelled:
        # Cancelled by its owner, or the job is no longer ours. The move carries our claim
        # token, so only a job still held by this worker becomes CANCELLED.
        if not heartbeat.lost.is_set():
            try:
                discard_outputs(job)
                execution.job_cancelled_by_worker(job=job, actor=actor)
                return JobState.CANCELLED
            except TransitionRefused:
                pass
        return "lost"
    except SandboxCrashed as exc:
        # As a pool process that died: the sweeper re-queues the job at once and counts
        # the death, so a processor that always crashes ends DEAD as a poison pill.
        logger.warning("job.processor_process_died job_id=%s: %s", job.id, exc)
        job_lease_give_up(job_id=job.id, worker=job.worker)
        return "lost"
    except ProcessorError as exc:
        return _fail(job, exc.code, exc.message, actor)
    except storage.ObjectNotFound as exc:
        return _fail(job, "input_not_found", f"the input object is gone: {exc}", actor)
    except storage.StorageError as exc:
        if isinstance(exc, storage.StorageUnavailable):
            raise
        return _fail(job, exc.code, str(exc), actor)


def _fail(job: Job, code: str, message: str, actor: str) -> str:
    discard_outputs(job)
    execution.job_fail(job=job, code=code, message=results.storable_text(message), actor=actor)
    return JobState.FAILED


def _process(job: Job, heartbeat: Heartbeat, actor: str) -> str:
    processor = get_processor(job.job_type)
    limits = job_limits(processor)
    watch = Watch(job, heartbeat)
    spec = {"id": str(job.id), "job_type": job.job_type, "input_bucket": job.input_bucket, "input_key": job.input_key,
            "input_size": job.input_size, "input_name": job.input_name, "input_etag": job.input_etag,
            "params": job.params}
    sandboxes = pool()
    sandbox = sandboxes.acquire()
    try:
        done = sandbox.run(job=spec, limits=limits, on_progress=watch.on_progress, should_stop=watch.should_stop)
    except SETTLED:
        sandboxes.release(sandbox)
        raise
    except SoftTimeLimitExceeded:
        sandbox.close()
        raise ResourceLimitExceeded("time", limits) from None
    except BaseException:
        sandbox.close()  # stopped mid-job by an error here: the child may still be running it
        raise
    sandboxes.release(sandbox)
    try:
        execution.job_complete(job=job, result=done["result"], result_keys=[done["result_key"], *done["outputs"]],
                               actor=actor)
    except DataError:
        # The checks in the child make this rare (a value the database refuses that they
        # do not know of); the database's own message is not the user's business.
        logger.warning("job.result_not_storable job_id=%s", job.id, exc_info=True)
        return _fail(job, "invalid_result", "The result cannot be stored: it holds a value the database does "
                     "not accept", actor)
    logger.info("job.completed job_id=%s", job.id)
    return JobState.COMPLETED


def job_handle_transient(*, job: Job, error: BaseException, worker: str) -> tuple[str, float | None]:
    """After a transient error in the attempt of `job` (the row as this worker claimed it):
    RETRYING with a delay, or DEAD; "lost", changing nothing, if the claim was replaced
    meanwhile (a worker that stalled past its lease). Returns (outcome, delay or None)."""
    discard_outputs(job)
    try:
        job, delay = execution.job_after_transient_error(job=job, error=error, traceback=traceback.format_exc(),
                                                         actor=f"worker:{worker}")
    except TransitionRefused as exc:
        logger.info("job.claim_lost job_id=%s worker=%s: %s", job.id, worker, exc)
        return "lost", None
    return (JobState.DEAD, None) if delay is None else (JobState.RETRYING, delay)


def job_run_task(*, job_id: str, worker: str) -> tuple[str, float | None]:
    """The task's whole body: claims and runs the job; on a transient or unexpected error
    records RETRYING or DEAD. Returns (outcome, delay or None); a delay means the same
    message is to run again after it: the retry's backoff, or, for a message that came
    before its retry was due ("deferred"), the time until it is. Errors before the claim
    (the database away) propagate: nothing was recorded."""
    claim = execution.job_try_claim(job_id=job_id, worker=worker)
    if claim.job is None:
        if claim.due_at is not None:
            # Early by a message the sweeper or a duplicate sent: not dropped, but put off.
            wait = max(0.0, (claim.due_at - timezone.now()).total_seconds()) + DEFER_MARGIN
            logger.info("job.deferred job_id=%s until=%s", job_id, claim.due_at.isoformat())
            return "deferred", round(wait, 3)
        return "skipped", None
    try:
        return job_attempt(job=claim.job, worker=worker), None
    except Exception as exc:
        # An unexpected error (a bug, most likely) is logged with its traceback; it is
        # handled as transient, and the dead letter keeps the traceback too.
        if not isinstance(exc, TRANSIENT_ERRORS):
            logger.exception("job.unexpected_error job_id=%s", job_id)
        return job_handle_transient(job=claim.job, error=exc, worker=worker)
