"""Running one job: claim, heartbeat, stream the input through the processor, record the outcome.

The Celery task is a thin wrapper around `job_run`; tests call it without Celery.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from typing import BinaryIO

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

import storage
from processors import get_processor
from processors.base import Cancelled, ProcessorError

from . import services
from .models import Job

logger = logging.getLogger(__name__)

# Errors worth another attempt: the object store, the network or the database blinked.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    storage.StorageUnavailable, OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError,
)


class Heartbeat:
    """Extends the job's lease from a side thread while the processor works.

    If the lease is lost (the sweeper gave the job to someone else), `lost` is set and
    the processor is stopped at its next chunk.
    """

    def __init__(self, job: Job):
        self.job_id, self.token = job.id, job.claim_token
        self.stop_event = threading.Event()
        self.lost = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.id}", daemon=True)

    def _beat(self) -> None:
        from django.db import connection

        try:
            while not self.stop_event.wait(settings.JOB_HEARTBEAT_SECONDS):
                try:
                    if not services.job_heartbeat(job_id=self.job_id, claim_token=self.token):
                        self.lost.set()
                        return
                except DatabaseError:
                    logger.warning("job.heartbeat_failed job_id=%s", self.job_id, exc_info=True)
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)


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
        self._last_progress = time.monotonic()

    @contextmanager
    def open_output(self, name: str, content_type: str = "application/octet-stream"):
        key = storage.output_key(self.job.id, name)
        with storage.open_write(storage.output_bucket(), key, content_type=content_type) as writer:
            yield writer
        self.output_keys.append(key)

    def progress(self, bytes_read: int) -> None:
        if self.heartbeat.lost.is_set():
            raise Cancelled("the job's lease was lost to another worker")
        now = time.monotonic()
        # Throttled: a progress row write and a WebSocket message at most every 0.2 s.
        if now - self._last_progress < settings.JOB_PROGRESS_MIN_INTERVAL:
            return
        self._last_progress = now
        if services.job_record_progress(job=self.job, bytes_read=bytes_read):
            raise Cancelled("cancelled by request")


def job_run(*, job_id: uuid.UUID | str, worker: str) -> str:
    """Runs one attempt of a job. Returns the state it ended in; raises transient errors
    (after recording RETRYING or DEAD) so that the Celery task can schedule the retry."""
    job = services.job_claim(job_id=job_id, worker=worker)
    if job is None:
        return "skipped"
    actor = f"worker:{worker}"
    logger.info("job.starting job_id=%s type=%s attempt=%s", job.id, job.job_type, job.attempts)
    try:
        with Heartbeat(job) as heartbeat:
            outcome = _process(job, heartbeat, actor)
    except Cancelled:
        job.refresh_from_db()
        if job.state == "PROCESSING" and not heartbeat.lost.is_set():
            services.job_cancelled_by_worker(job=job, actor=actor)
            return "CANCELLED"
        return "lost"
    except ProcessorError as exc:
        services.job_fail(job=job, code=exc.code, message=exc.message, actor=actor)
        return "FAILED"
    except storage.ObjectNotFound as exc:
        services.job_fail(job=job, code="input_not_found", message=f"the input object is gone: {exc}", actor=actor)
        return "FAILED"
    except storage.StorageError as exc:
        if isinstance(exc, storage.StorageUnavailable):
            raise
        services.job_fail(job=job, code=exc.code, message=str(exc), actor=actor)
        return "FAILED"
    return outcome


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
    services.job_complete(job=job, result=result, result_keys=[result_key, *ctx.output_keys], actor=actor)
    logger.info("job.completed job_id=%s", job.id)
    return "COMPLETED"


def job_handle_transient(*, job_id: uuid.UUID | str, error: BaseException, worker: str) -> float | None:
    """After a transient error: RETRYING (returns the delay) or DEAD (returns None)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.state != "PROCESSING":
        return None
    job, delay = services.job_after_transient_error(job=job, error=error, traceback=traceback.format_exc(),
                                                    actor=f"worker:{worker}")
    return delay
