"""Creating jobs: input and parameter checks, idempotency, and the form's small-file upload."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

import storage
from jobplatform import destinations
from processors import get_processor
from processors.base import ProcessorError
from storage.keys import is_valid_key

from ..errors import JobError
from ..models import Job, JobEvent, JobState
from ..state_machine import job_insert
from ..storable import unstorable_reason
from .queue import job_publish, queue_changes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreateResult:
    job: Job
    created: bool
    # The events this request wrote, oldest first, when it created the job: the response
    # shows them without reading them back. None for an idempotent repeat.
    events: list[JobEvent] | None = None


def job_create(*, owner: AbstractBaseUser, job_type: str, input_key: str, input_bucket: str | None = None,
               params: dict | None = None, idempotency_key: str | None = None, input_name: str = "",
               max_attempts: int | None = None, callback_url: str = "") -> CreateResult:
    """Validates everything up front, then writes the row CREATED and QUEUED, with both
    events, in one transaction; the run message is published once that commits."""
    bucket = input_bucket or storage.input_bucket()
    if not isinstance(job_type, str) or not job_type:
        raise JobError("job_type is required", code="invalid_job_type")
    if params is not None and not isinstance(params, dict):
        raise JobError("params must be a JSON object", code="invalid_params")
    fingerprint = ""
    if idempotency_key is not None:
        idempotency_key = idempotency_key.strip()
        if not idempotency_key or len(idempotency_key) > 255 or not idempotency_key.isprintable():
            raise JobError("Idempotency-Key must be 1 to 255 printable characters", code="invalid_idempotency_key")
        fingerprint = _fingerprint(job_type, bucket, input_key, params, callback_url)
        existing = Job.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _same_request(existing, fingerprint)

    try:
        processor = get_processor(job_type)
    except ProcessorError as exc:
        raise JobError(exc.message, code="unknown_job_type") from None
    try:
        clean_params = processor.validate_params(params or {})
    except ProcessorError as exc:
        raise JobError(exc.message, code="invalid_params", details=exc.details) from None
    reason = unstorable_reason(clean_params, "params")
    if reason:
        raise JobError(f"{reason}, which PostgreSQL cannot store"[:300], code="invalid_params")

    if callback_url:
        _check_callback_url(callback_url)
    info = _check_input(owner=owner, bucket=bucket, key=input_key)
    job = Job(owner=owner, job_type=job_type, params=clean_params, processor_version=processor.version,
              input_bucket=bucket, input_key=input_key, input_size=info.size, input_etag=info.etag,
              input_name=storage.safe_filename(input_name or input_key.rsplit("/", 1)[-1]),
              progress_total=info.size, max_attempts=max_attempts or settings.JOB_MAX_ATTEMPTS,
              idempotency_key=idempotency_key, request_fingerprint=fingerprint, callback_url=callback_url)
    task_id = str(uuid.uuid4())
    try:
        created, queued = job_insert(job=job, actor=f"user:{owner.pk}", then=JobState.QUEUED, then_actor="enqueuer",
                                     changes=queue_changes(job, task_id))
        transaction.on_commit(lambda: job_publish(job=job, task_id=task_id))
    except IntegrityError:
        # Two requests with one Idempotency-Key raced; the other one's row stands.
        existing = Job.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _same_request(existing, fingerprint)
    logger.info("job.created job_id=%s type=%s owner=%s size=%s", job.id, job_type, owner.pk, info.size)
    return CreateResult(job=job, created=True, events=[created, queued])


def _check_callback_url(url: str) -> None:
    try:
        destinations.check(url)
    except destinations.DestinationRefused as exc:
        raise JobError(f"callback_url: {exc.message}", code=exc.code, details={"callback_url": [exc.message]}) from None


def _fingerprint(job_type: str, bucket: str, key: str, params: Any, callback_url: str = "") -> str:
    request = {"job_type": job_type, "bucket": bucket, "key": key, "params": params or {}}
    if callback_url:  # only when given, so that the fingerprints of jobs without one stay as they were
        request["callback_url"] = callback_url
    body = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _same_request(existing: Job, fingerprint: str) -> CreateResult:
    if existing.request_fingerprint != fingerprint:
        raise JobError("this Idempotency-Key was already used with a different request body",
                       code="idempotency_key_reused", status=409, details={"job_id": str(existing.id)})
    return CreateResult(job=existing, created=False)


def _check_input(*, owner: AbstractBaseUser, bucket: str, key: str) -> storage.ObjectInfo:
    if not isinstance(key, str) or not key or len(key) > 1024:
        raise JobError("input_object_key is required (at most 1024 characters)", code="invalid_input")
    if bucket != storage.input_bucket():
        raise JobError(f"input bucket must be {storage.input_bucket()!r}", code="invalid_input")
    # An upload key names its owner: uploads/<owner id>/...; anything else is not theirs.
    if not key.startswith(storage.owner_upload_prefix(owner.pk)) or ".." in key.split("/"):
        raise JobError("input object not found", code="input_not_found", status=404)
    if not is_valid_key(key):
        raise JobError("input_object_key is not a valid object key (control characters, a backslash, "
                       "or an empty or dot segment)", code="invalid_key")
    try:
        return storage.head(bucket, key)
    except storage.ObjectNotFound:
        raise JobError("input object not found", code="input_not_found", status=404) from None
    except storage.AccessDenied:
        raise  # the platform's own credentials are refused: a misconfiguration, not the client's input
    except storage.StorageUnavailable:
        raise JobError("object storage is unavailable; try again shortly", code="storage_unavailable",
                       status=503) from None
    except storage.StorageError:
        # Anything else the store refused is about this key, not an outage: the client's to fix.
        raise JobError("object storage refused this input_object_key", code="invalid_key") from None


def job_create_from_file(*, owner: AbstractBaseUser, job_type: str, params: dict | None, fileobj: IO[bytes],
                         filename: str, content_type: str = "application/octet-stream") -> CreateResult:
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
