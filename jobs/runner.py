"""Running one job: claim, heartbeat, stream the input through the processor, record the outcome.

The Celery task is a thin wrapper around `job_run`; tests call it without Celery.
"""

from __future__ import annotations

import json
import logging
import os
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
from .state_machine import TransitionRefused

logger = logging.getLogger(__name__)

# Errors worth another attempt: the object store, the network or the database blinked.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    storage.StorageUnavailable, OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError,
)


class Heartbeat:
    """Extends the job's lease while the processor works, from the process's beater thread.

    If the lease is lost (the sweeper gave the job to someone else), `lost` is set and
    the processor is stopped at its next chunk. Entering and leaving only registers the
    job with the beater: a job that ends within one interval costs no thread and no
    statement of its own.
    """

    def __init__(self, job: Job):
        self.job_id, self.token = job.id, job.claim_token
        self.lost = threading.Event()
        self.due = 0.0

    def __enter__(self) -> Heartbeat:
        _Beater.get().add(self)
        return self

    def __exit__(self, *exc) -> None:
        _Beater.get().remove(self)


class _Beater:
    """One daemon thread per process that beats for every job the process is running,
    each JOB_HEARTBEAT_SECONDS after the last (a thread of one's own per job cost a tiny
    job a start and a join: two hand-offs between threads on a busy machine)."""

    _instance: _Beater | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.jobs: set[Heartbeat] = set()
        self.changed = threading.Condition()
        self.wake_at = 0.0  # when the thread wakes next (0: not yet asleep)
        self.connected = False  # whether it has used a database connection since it last closed it
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> _Beater:
        # By pid: a forked Celery child starts its own (its parent's thread did not fork).
        beater = cls._instance
        if beater is None or beater.pid != os.getpid():
            with cls._lock:
                if cls._instance is None or cls._instance.pid != os.getpid():
                    cls._instance = cls()
                beater = cls._instance
        return beater

    def add(self, heartbeat: Heartbeat) -> None:
        with self.changed:
            heartbeat.due = time.monotonic() + settings.JOB_HEARTBEAT_SECONDS
            self.jobs.add(heartbeat)
            if heartbeat.due < self.wake_at:  # else the thread wakes in time anyway
                self.changed.notify()

    def remove(self, heartbeat: Heartbeat) -> None:
        with self.changed:
            self.jobs.discard(heartbeat)
            if not self.jobs and self.connected:  # wake it to let go of its connection
                self.changed.notify()

    def _run(self) -> None:
        from django.db import connection

        while True:
            with self.changed:
                now = time.monotonic()
                due = [job for job in self.jobs if job.due <= now]
                if not due:
                    if not self.jobs and self.connected:
                        connection.close()  # idle: hold no database connection
                        self.connected = False
                    self.wake_at = min((job.due for job in self.jobs), default=now + 3600)
                    self.changed.wait(self.wake_at - now)
                    continue
                for job in due:
                    job.due = now + settings.JOB_HEARTBEAT_SECONDS
                self.connected = True
            for job in due:
                self._beat(job)

    def _beat(self, heartbeat: Heartbeat) -> None:
        try:
            if not services.job_heartbeat(job_id=heartbeat.job_id, claim_token=heartbeat.token):
                heartbeat.lost.set()
                self.remove(heartbeat)
        except DatabaseError:
            logger.warning("job.heartbeat_failed job_id=%s", heartbeat.job_id, exc_info=True)
        except Exception:  # the thread must outlive any one failure
            logger.exception("job.heartbeat_error job_id=%s", heartbeat.job_id)


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


def _start_reading(input_hint) -> tuple[tuple[str, str] | None, object]:
    """Sends the GET of the input the message names, before the claim: the object store
    answers while the database does (on a busy machine each blocking step of a tiny job
    costs about as much as the work itself). Only a hint: used if the claimed row names
    the same object, else dropped."""
    if not (isinstance(input_hint, list | tuple) and len(input_hint) == 2
            and all(isinstance(part, str) and part for part in input_hint)):
        return None, None
    try:
        return (input_hint[0], input_hint[1]), storage.start_read(input_hint[0], input_hint[1])
    except Exception:  # only a head start: the ordinary read later reports any real problem
        logger.debug("job.start_read_failed", exc_info=True)
        return None, None


def job_run(*, job_id: uuid.UUID | str, worker: str, input_hint: list | None = None) -> str:
    """Runs one attempt of a job. Returns the state it ended in; raises transient errors
    (after recording RETRYING or DEAD) so that the Celery task can schedule the retry."""
    hinted, started = _start_reading(input_hint)
    try:
        job = services.job_claim(job_id=job_id, worker=worker)
        if job is None:
            return "skipped"
        return _run_claimed(job, worker, started if hinted == (job.input_bucket, job.input_key) else None)
    finally:
        storage.discard_read(started)  # unless the processor opened it (then it is ended already)


def _run_claimed(job: Job, worker: str, started) -> str:
    actor = f"worker:{worker}"
    logger.info("job.starting job_id=%s type=%s attempt=%s", job.id, job.job_type, job.attempts)
    try:
        with Heartbeat(job) as heartbeat:
            return _process(job, heartbeat, actor, started)
    except Cancelled:
        # Cancelled by its owner, or the job is no longer ours. The move is made with our
        # claim token (not the row's: another worker may hold the job now), so only a job
        # still held by this worker becomes CANCELLED.
        if not heartbeat.lost.is_set():
            try:
                services.job_cancelled_by_worker(job=job, actor=actor)
                return "CANCELLED"
            except TransitionRefused:
                pass
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


def _process(job: Job, heartbeat: Heartbeat, actor: str, started=None) -> str:
    processor = get_processor(job.job_type)
    with storage.open_read(job.input_bucket, job.input_key, started=started) as stream:
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
