"""Running one job: claim, heartbeat, stream the input through the processor, record the outcome.

The Celery task is a thin wrapper around `job_run_task`; tests call it, or `job_run`, without Celery.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

import storage
from processors import get_processor
from processors.base import Cancelled, ProcessorError

from .errors import TransitionRefused
from .heartbeat import Heartbeat
from .models import Job, JobState
from .services import execution

logger = logging.getLogger(__name__)

# Errors worth another attempt: the object store, the network or the database blinked.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    storage.StorageUnavailable, OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError,
)

# A deferred message comes back this much after its retry is due, so that it is not early again
# by the broker's rounding of its countdown.
DEFER_MARGIN = 0.05


class JobContext:
    """What a processor sees: the input stream, its params, output writers and progress."""

    def __init__(self, job: Job, stream: BinaryIO, heartbeat: Heartbeat):
        self.job = job
        self.job_id = str(job.id)
        self.input = stream
        self.input_size = job.input_size
        self.input_name = job.input_name
        self.params = job.params
        self.heartbeat = heartbeat
        self.output_keys: list[str] = []
        # The first progress row is written after one interval of work, not at once: a
        # job that finishes sooner never pays for progress writes it would not show.
        self.last_progress = time.monotonic()

    @contextmanager
    def open_output(self, name: str, content_type: str = "application/octet-stream") -> Iterator:
        key = storage.output_key(self.job.id, name)
        with storage.open_write(storage.output_bucket(), key, content_type=content_type) as writer:
            yield writer
        self.output_keys.append(key)

    def progress(self, bytes_read: int) -> None:
        if self.heartbeat.lost.is_set():
            raise Cancelled("the job's lease was lost to another worker")
        now = time.monotonic()
        # Throttled: a progress row write and a WebSocket message at most every interval.
        if now - self.last_progress < settings.JOB_PROGRESS_MIN_INTERVAL:
            return
        self.last_progress = now
        if execution.job_record_progress(job=self.job, bytes_read=bytes_read):
            raise Cancelled("cancelled by request")


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
                execution.job_cancelled_by_worker(job=job, actor=actor)
                return JobState.CANCELLED
            except TransitionRefused:
                pass
        return "lost"
    except ProcessorError as exc:
        execution.job_fail(job=job, code=exc.code, message=exc.message, actor=actor)
        return JobState.FAILED
    except storage.ObjectNotFound as exc:
        execution.job_fail(job=job, code="input_not_found", message=f"the input object is gone: {exc}", actor=actor)
        return JobState.FAILED
    except storage.StorageError as exc:
        if isinstance(exc, storage.StorageUnavailable):
            raise
        execution.job_fail(job=job, code=exc.code, message=str(exc), actor=actor)
        return JobState.FAILED


def _process(job: Job, heartbeat: Heartbeat, actor: str) -> str:
    processor = get_processor(job.job_type)
    with storage.open_read(job.input_bucket, job.input_key) as stream:
        ctx = JobContext(job, stream, heartbeat)
        result = processor.run(ctx)
    document = {
        "job_id": str(job.id),
        "job_type": job.job_type,
        "processor_version": processor.version,
        "input": {"bucket": job.input_bucket, "key": job.input_key, "size": job.input_size, "etag": job.input_etag},
        "params": job.params,
        "result": result,
        "outputs": ctx.output_keys,
    }
    result_key = storage.output_key(job.id, "result.json")
    storage.put_bytes(storage.output_bucket(), result_key,
                      json.dumps(document, indent=2, sort_keys=True).encode(), "application/json")
    execution.job_complete(job=job, result=result, result_keys=[result_key, *ctx.output_keys], actor=actor)
    logger.info("job.completed job_id=%s", job.id)
    return JobState.COMPLETED


def job_handle_transient(*, job: Job, error: BaseException, worker: str) -> tuple[str, float | None]:
    """After a transient error in the attempt of `job` (the row as this worker claimed it):
    RETRYING with a delay, or DEAD; "lost", changing nothing, if the claim was replaced
    meanwhile (a worker that stalled past its lease). Returns (outcome, delay or None)."""
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
