"""Job services: creating, enqueuing, claiming, finishing, cancelling and replaying jobs.

Views, API views, tasks, commands and the admin call these; none of them changes a job
row directly. Each state change goes through state_machine.job_transition.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

import storage
from processors import get_processor
from processors.base import ProcessorError

from .models import DeadLetter, Job, JobEvent, JobState
from .state_machine import Add, TransitionRefused, insert_created, insert_queued, job_transition

logger = logging.getLogger(__name__)
S = JobState


class JobError(Exception):
    """A request about a job that cannot be done; views turn it into a 4xx with this message."""

    def __init__(self, message: str, *, code: str = "invalid", status: int = 400, details: dict | None = None):
        super().__init__(message)
        self.message, self.code, self.status, self.details = message, code, status, details or {}


# --- create ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CreateResult:
    job: Job
    created: bool
    # The events this request wrote, oldest first, when it created the job: the response
    # shows them without reading them back. None for an idempotent repeat.
    events: list[JobEvent] | None = None


def _fingerprint(job_type: str, bucket: str, key: str, params: Any) -> str:
    body = json.dumps({"job_type": job_type, "bucket": bucket, "key": key, "params": params or {}},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def job_create(*, owner, job_type: str, input_key: str, input_bucket: str | None = None,
               params: dict | None = None, idempotency_key: str | None = None, input_name: str = "",
               max_attempts: int | None = None) -> CreateResult:
    """Validates everything up front, commits the CREATED row, and enqueues on commit."""
    bucket = input_bucket or storage.input_bucket()
    if not isinstance(job_type, str) or not job_type:
        raise JobError("job_type is required", code="invalid_job_type")
    if params is not None and not isinstance(params, dict):
        raise JobError("params must be a JSON object", code="invalid_params")
    if idempotency_key is not None:
        idempotency_key = idempotency_key.strip()
        if not idempotency_key or len(idempotency_key) > 255 or not idempotency_key.isprintable():
            raise JobError("Idempotency-Key must be 1 to 255 printable characters", code="invalid_idempotency_key")
        fingerprint = _fingerprint(job_type, bucket, input_key, params)
        existing = Job.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _same_request(existing, fingerprint)
    else:
        fingerprint = ""

    try:
        processor = get_processor(job_type)
    except ProcessorError as exc:
        raise JobError(exc.message, code="unknown_job_type") from None
    try:
        clean_params = processor.validate_params(params or {})
    except ProcessorError as exc:
        raise JobError(exc.message, code="invalid_params", details=exc.details) from None

    info = _check_input(owner=owner, bucket=bucket, key=input_key)
    job = Job(owner=owner, job_type=job_type, params=clean_params, processor_version=processor.version,
              input_bucket=bucket, input_key=input_key, input_size=info.size, input_etag=info.etag,
              input_name=input_name or storage.safe_filename(input_key.rsplit("/", 1)[-1]),
              progress_total=info.size, max_attempts=max_attempts or settings.JOB_MAX_ATTEMPTS,
              idempotency_key=idempotency_key, request_fingerprint=fingerprint)
    try:
        if connection.in_atomic_block:
            # Inside a caller's transaction: CREATED now, queued and published once it commits.
            created_event = insert_created(job, actor=f"user:{owner.pk}")
        else:
            # Committed at once, so queued at once: the row, its CREATED and QUEUED events in
            # one statement, and the message published right after.
            task_id = str(uuid.uuid4())
            job = insert_queued(job, actor=f"user:{owner.pk}", enqueuer="enqueuer",
                                changes=_enqueue_changes(job, task_id))
    except IntegrityError:
        # Two requests with one Idempotency-Key raced; the other one's row stands.
        existing = Job.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _same_request(existing, fingerprint)
    logger.info("job.created job_id=%s type=%s owner=%s size=%s", job.id, job_type, owner.pk, info.size)
    if job.state == S.QUEUED:
        publish(job=job, task_id=task_id)
        return CreateResult(job=job, created=True, events=[job.created_event, job.transition_event])
    transaction.on_commit(lambda: job_enqueue(job_id=job.id, reason="created", actor="enqueuer", current=job))
    return CreateResult(job=job, created=True, events=[created_event])


def _same_request(existing: Job, fingerprint: str) -> CreateResult:
    if existing.request_fingerprint != fingerprint:
        raise JobError("this Idempotency-Key was already used with a different request body",
                       code="idempotency_key_reused", status=409, details={"job_id": str(existing.id)})
    return CreateResult(job=existing, created=False)


def _check_input(*, owner, bucket: str, key: str) -> storage.ObjectInfo:
    if not isinstance(key, str) or not key or len(key) > 1024:
        raise JobError("input_object_key is required (at most 1024 characters)", code="invalid_input")
    if bucket != storage.input_bucket():
        raise JobError(f"input bucket must be {storage.input_bucket()!r}", code="invalid_input")
    # An upload key names its owner: uploads/<owner id>/...; anything else is not theirs.
    if not key.startswith(storage.owner_upload_prefix(owner.pk)) or ".." in key.split("/"):
        raise JobError("input object not found", code="input_not_found", status=404)
    try:
        return storage.head(bucket, key)
    except storage.ObjectNotFound:
        raise JobError("input object not found", code="input_not_found", status=404) from None
    except storage.StorageUnavailable:
        raise JobError("object storage is unavailable; try again shortly", code="storage_unavailable",
                       status=503) from None


# --- enqueue ---------------------------------------------------------------------------------

def job_enqueue(*, job_id: uuid.UUID | str, reason: str, actor: str,
                expected: tuple[str, ...] = (S.CREATED,), changes: dict | None = None,
                current: Job | None = None) -> Job | None:
    """Moves a job to QUEUED and publishes its message after commit.

    current: the caller's copy of the row, if it has one (see job_transition).
    If the publish fails (broker down) the job stays QUEUED and the sweeper publishes it
    again later: the database, not the broker, is the source of truth.
    """
    task_id = str(uuid.uuid4())
    try:
        job = job_transition(job_id=job_id, to=S.QUEUED, expected=expected, reason=reason, actor=actor,
                             current=current,
                             changes=lambda locked: {**_enqueue_changes(locked, task_id), **(changes or {})})
    except (TransitionRefused, Job.DoesNotExist) as exc:
        logger.info("job.enqueue_skipped job_id=%s reason=%s", job_id, exc)
        return None
    transaction.on_commit(lambda: publish(job=job, task_id=task_id))
    return job


def _enqueue_changes(job: Job, task_id: str) -> dict:
    """What queuing sets besides the state: the new message's task id (the job keeps its
    last 20), and no pending retry, cancel request or republishes."""
    return {"celery_task_id": task_id, "task_ids": [*job.task_ids[-19:], task_id], "next_attempt_at": None,
            "publish_count": 1, "cancel_requested": False}


def publish(*, job: Job, task_id: str) -> bool:
    """Sends the run message, with the processor's own soft and hard time limits."""
    from .tasks import run_job

    job_id = job.id
    try:
        processor = get_processor(job.job_type)
        # The input's location rides along as a hint: the worker starts reading it while it
        # claims the job, and uses what it read only if the claimed row names the same object.
        run_job.apply_async(args=[str(job_id)], kwargs={"input_hint": [job.input_bucket, job.input_key]},
                            task_id=task_id, retry=False, soft_time_limit=processor.soft_time_limit,
                            time_limit=processor.time_limit)
        return True
    except Exception:
        logger.warning("job.publish_failed job_id=%s (the sweeper will publish it again)", job_id, exc_info=True)
        return False


# --- worker side -----------------------------------------------------------------------------

def job_claim(*, job_id: uuid.UUID | str, worker: str) -> Job | None:
    """Takes a QUEUED or RETRYING job for this worker; None if someone else has it or it is over."""
    now = timezone.now()
    try:
        # Nothing here depends on the row as read (attempts is incremented where it is), so
        # the claim is one statement.
        return job_transition(job_id=job_id, to=S.PROCESSING, expected=(S.QUEUED, S.RETRYING),
                              reason="claimed", actor=f"worker:{worker}",
                              changes={"claim_token": uuid.uuid4(), "worker": worker[:255], "attempts": Add(1),
                                       "started_at": now, "heartbeat_at": now,
                                       "lease_expires_at": now + timedelta(seconds=settings.JOB_LEASE_SECONDS),
                                       "next_attempt_at": None, "progress_bytes": 0})
    except TransitionRefused as exc:
        logger.info("job.claim_refused job_id=%s worker=%s: %s", job_id, worker, exc)
        return None
    except Job.DoesNotExist:
        return None


def job_heartbeat(*, job_id: uuid.UUID | str, claim_token: uuid.UUID) -> bool:
    """Extends the lease; False if the job is no longer this worker's."""
    now = timezone.now()
    return bool(Job.objects.filter(pk=job_id, state=S.PROCESSING, claim_token=claim_token).update(
        heartbeat_at=now, lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS)))


def job_record_progress(*, job: Job, bytes_read: int) -> bool:
    """Writes progress; returns True if the job's owner asked to cancel it."""
    now = timezone.now()
    updated = Job.objects.filter(pk=job.pk, state=S.PROCESSING, claim_token=job.claim_token).update(
        progress_bytes=bytes_read, updated_at=now)
    job.progress_bytes = bytes_read
    if updated:
        job.updated_at = now  # the caller's copy stays current (job_complete tries it before reading)
        from .notify import job_changed

        job_changed(job)
    row = Job.objects.filter(pk=job.pk).values("cancel_requested", "state", "claim_token").first()
    return (row is None or row["cancel_requested"] or row["state"] != S.PROCESSING
            or row["claim_token"] != job.claim_token)


def job_complete(*, job: Job, result: dict, result_keys: list[str], actor: str) -> Job:
    return job_transition(job_id=job.id, to=S.COMPLETED, expected=S.PROCESSING, claim_token=job.claim_token,
                          reason="result written", actor=actor, current=job,
                          changes={"result": result, "result_keys": result_keys, "error_code": "",
                                   "error_message": "", "progress_bytes": job.input_size})


def job_fail(*, job: Job, code: str, message: str, actor: str) -> Job:
    return job_transition(job_id=job.id, to=S.FAILED, expected=S.PROCESSING, claim_token=job.claim_token,
                          reason=message, actor=actor, current=job,
                          changes={"error_code": code[:64], "error_message": message})


def job_cancelled_by_worker(*, job: Job, actor: str) -> Job:
    return job_transition(job_id=job.id, to=S.CANCELLED, expected=S.PROCESSING, claim_token=job.claim_token,
                          reason="cancelled at the next chunk", actor=actor,
                          changes={"error_code": "cancelled", "error_message": "cancelled by request"})


def retry_delay(attempt: int) -> float:
    """Exponential backoff with full jitter, capped: base * 2^(attempt-1), random in [half, all]."""
    ceiling = min(settings.JOB_RETRY_BACKOFF_MAX, settings.JOB_RETRY_BACKOFF_BASE * (2 ** max(0, attempt - 1)))
    return round(random.uniform(ceiling / 2, ceiling), 3)


def job_after_transient_error(*, job: Job, error: BaseException, traceback: str,
                              actor: str) -> tuple[Job, float | None]:
    """RETRYING with a backoff if attempts remain, else DEAD. Returns (job, delay or None)."""
    message = f"{type(error).__name__}: {error}"[:2000]
    if job.attempts >= job.max_attempts:
        return job_kill(job_id=job.id, expected=S.PROCESSING, claim_token=job.claim_token, actor=actor,
                        reason=f"attempts exhausted ({job.attempts}/{job.max_attempts}); last error: {message}",
                        traceback=traceback, code="attempts_exhausted"), None
    delay = retry_delay(job.attempts)
    job = job_transition(job_id=job.id, to=S.RETRYING, expected=S.PROCESSING, claim_token=job.claim_token,
                         reason=f"transient error, retry in {delay:.1f}s: {message}", actor=actor,
                         changes={"error_code": "transient_error", "error_message": message, "claim_token": None,
                                  "lease_expires_at": None,
                                  "next_attempt_at": timezone.now() + timedelta(seconds=delay)})
    return job, delay


def job_kill(*, job_id, expected, reason: str, traceback: str = "", actor: str, code: str = "dead",
             claim_token: uuid.UUID | None = None) -> Job:
    """DEAD, with a dead-letter row, and the message parked on the dead-letter queue."""
    with transaction.atomic():
        job = job_transition(job_id=job_id, to=S.DEAD, expected=expected, claim_token=claim_token, reason=reason,
                             actor=actor, changes={"error_code": code, "error_message": reason[:2000]})
        now = timezone.now()
        DeadLetter.objects.update_or_create(job=job, defaults={
            "reason": reason, "traceback": traceback[-20000:], "attempts": job.attempts, "died_at": now})
        transaction.on_commit(lambda: _park_dead_letter(job.id, reason))
    return job


def _park_dead_letter(job_id, reason: str) -> None:
    from .tasks import Queue, dead_letter

    try:
        dead_letter.apply_async(args=[str(job_id), reason[:1000]], queue=Queue.DEAD_LETTER, retry=False)
    except Exception:  # the DeadLetter row is the record that matters; the queue is a copy
        logger.warning("job.dead_letter_publish_failed job_id=%s", job_id, exc_info=True)


# --- user and operator actions -----------------------------------------------------------

def job_cancel(*, job: Job, actor: str) -> Job:
    """Not yet running: CANCELLED now. Running: flagged, and the worker stops at the next chunk."""
    try:
        return job_transition(job_id=job.id, to=S.CANCELLED, expected=(S.CREATED, S.QUEUED, S.RETRYING),
                              reason="cancelled", actor=actor,
                              changes={"error_code": "cancelled", "error_message": "cancelled by request"})
    except TransitionRefused as exc:
        current = exc.job or job
    if current.state == S.PROCESSING:
        Job.objects.filter(pk=job.pk, state=S.PROCESSING).update(cancel_requested=True)
        current.refresh_from_db()
        return current
    raise JobError(f"a {current.state} job cannot be cancelled", code="invalid_state", status=409)


def job_retry(*, job: Job, actor: str) -> Job:
    """An operator's retry of a FAILED or DEAD job: attempts start over."""
    result = job_enqueue(job_id=job.id, expected=(S.FAILED, S.DEAD), reason="retried by operator", actor=actor,
                         changes={"attempts": 0, "worker_deaths": 0, "error_code": "", "error_message": "",
                                  "finished_at": None, "progress_bytes": 0})
    if result is None:
        job.refresh_from_db()
        raise JobError(f"only FAILED or DEAD jobs can be retried; this one is {job.state}", code="invalid_state",
                       status=409)
    DeadLetter.objects.filter(job=job).update(replayed_at=timezone.now())
    return result


def dead_letter_replay(*, dead_letter: DeadLetter, actor: str) -> Job:
    """Queues a dead job again. Replaying twice is harmless: the second finds it no longer DEAD."""
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().get(pk=dead_letter.pk)
        job = job_enqueue(job_id=letter.job_id, expected=(S.DEAD,), reason="replayed from dead letter", actor=actor,
                          changes={"attempts": 0, "worker_deaths": 0, "error_code": "", "error_message": "",
                                   "finished_at": None, "progress_bytes": 0})
        if job is None:
            current = Job.objects.get(pk=letter.job_id)
            raise JobError(f"job is {current.state}, not DEAD; nothing to replay", code="invalid_state", status=409)
        letter.replayed_at = timezone.now()
        letter.replay_count += 1
        letter.save(update_fields=["replayed_at", "replay_count"])
    return job


# --- downloads -----------------------------------------------------------------------------

def job_download_url(*, job: Job, which: str = "result", expiry_sec: int | str | None = None,
                     output: str | None = None) -> tuple[str, timezone.datetime]:
    """A presigned GET URL for the job's result (or another output, or its input) and when it expires."""
    if expiry_sec in (None, ""):
        expiry = settings.PRESIGNED_URL_DEFAULT_EXPIRY
    else:
        try:
            expiry = int(expiry_sec)
        except (TypeError, ValueError):
            raise JobError("expiry_sec must be a whole number of seconds", code="invalid_expiry") from None
    if not 1 <= expiry <= settings.PRESIGNED_URL_MAX_EXPIRY:
        raise JobError(f"expiry_sec must be between 1 and {settings.PRESIGNED_URL_MAX_EXPIRY}", code="invalid_expiry")
    if which == "input":
        bucket, key, filename = job.input_bucket, job.input_key, job.input_name
    else:
        if job.state != S.COMPLETED:
            raise JobError(f"the job is {job.state}; results exist once it is COMPLETED", code="not_ready", status=409)
        bucket = storage.output_bucket()
        name = output or "result.json"
        key = storage.output_key(job.id, name)
        if key not in job.result_keys:
            raise JobError(f"the job has no output named {name!r}", code="not_found", status=404)
        stem = (job.input_name or "input").rsplit(".", 1)[0]
        filename = f"{stem}.{name}"
    url = storage.presigned_get_url(bucket, key, expires=expiry, filename=filename)
    return url, timezone.now() + timedelta(seconds=expiry)


# --- the web form's upload without JavaScript ------------------------------------------------

def job_create_from_file(*, owner, job_type: str, params: dict | None, fileobj, filename: str,
                         content_type: str = "application/octet-stream") -> CreateResult:
    """Stores a (small) form-posted file under the owner's upload prefix and creates its job.

    Type and params are checked before any byte is stored, and the object is deleted again
    if the job cannot be created: a refused form leaves nothing behind in the bucket.
    """
    try:
        get_processor(job_type).validate_params(params or {})
    except ProcessorError as exc:
        code = "unknown_job_type" if exc.code == "unknown_job_type" else "invalid_params"
        raise JobError(exc.message, code=code, details=exc.details) from None
    bucket = storage.input_bucket()
    key = storage.upload_key(owner.pk, filename)
    try:
        with storage.open_write(bucket, key, content_type=content_type or "application/octet-stream") as writer:
            for chunk in iter(lambda: fileobj.read(1024 * 1024), b""):
                writer.write(chunk)
    except storage.StorageUnavailable:
        raise JobError("object storage is unavailable; try again shortly", code="storage_unavailable",
                       status=503) from None
    try:
        return job_create(owner=owner, job_type=job_type, input_key=key, params=params,
                          input_name=storage.safe_filename(filename))
    except BaseException:
        try:
            storage.delete(bucket, key)
        except storage.StorageError:
            logger.warning("upload.cleanup_failed key=%s", key, exc_info=True)
        raise


# --- pruning -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PruneOutcome:
    removed: bool
    outputs: int = 0
    input_deleted: bool = False
    error: str = ""


def job_prune(*, job: Job) -> PruneOutcome:
    """Deletes a finished job's row, its outputs, and its input unless another job uses it.

    The row goes first, and only while the job is still finished: a job replayed meanwhile
    is kept with its objects. An object left behind by a storage error is only garbage.
    """
    from .models import TERMINAL_STATES

    deleted, _ = Job.objects.filter(pk=job.pk, state__in=TERMINAL_STATES).delete()
    if not deleted:
        return PruneOutcome(removed=False)
    try:
        outputs = storage.delete_prefix(storage.output_bucket(), storage.output_prefix(job.id))
        shared = Job.objects.filter(input_bucket=job.input_bucket, input_key=job.input_key).exists()
        if not shared:
            storage.delete(job.input_bucket, job.input_key)
    except storage.StorageError as exc:
        return PruneOutcome(removed=True, error=str(exc))
    return PruneOutcome(removed=True, outputs=outputs, input_deleted=not shared)
