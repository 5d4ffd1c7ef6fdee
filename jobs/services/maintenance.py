"""Maintenance: removing finished jobs with their objects, and aborting abandoned uploads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import storage
from storage import multipart

from ..models import TERMINAL_STATES, Job
from ..uploads.models import UploadSession

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class AbandonedUploads:
    aborted: int = 0  # multipart uploads aborted on the server
    sessions: int = 0  # direct-upload rows marked ABORTED (their upload aborted, or already gone)
    errors: tuple[str, ...] = ()


def uploads_abort_abandoned(*, older_than: timedelta | None = None, now: datetime | None = None) -> AbandonedUploads:
    """Aborts multipart uploads open for longer than `older_than` (UPLOAD_ABANDONED_SECONDS).

    It does not rely on the server's lifecycle rules, which not every server enforces. It
    covers direct uploads whose client never finished (their rows become ABORTED), streamed
    uploads whose web process was killed, and outputs of a worker killed mid-write, in both
    buckets under this platform's key prefix. A direct upload's age is its row's; any other's
    is the server's `Initiated` time. `now` is what ages are measured against (default: now).
    """
    if settings.STORAGE_BACKEND != "s3":
        return AbandonedUploads()
    if older_than is None:
        older_than = timedelta(seconds=settings.UPLOAD_ABANDONED_SECONDS)
    cutoff = (now or timezone.now()) - older_than
    aborted, sessions, errors = 0, 0, []
    stale = UploadSession.objects.filter(status=UploadSession.Status.OPEN, created_at__lt=cutoff)
    for pk in list(stale.values_list("pk", flat=True)):
        with transaction.atomic():
            # Locked as multipart_complete locks it; one being completed right now is skipped.
            session = stale.select_for_update(skip_locked=True).filter(pk=pk).first()
            if session is None:
                continue
            try:
                multipart.abort(session.bucket, session.key, session.s3_upload_id)
                aborted += 1
            except storage.ObjectNotFound:
                pass  # already gone on the server
            except storage.StorageError as exc:
                errors.append(str(exc))
                continue
            session.status, session.finished_at = UploadSession.Status.ABORTED, timezone.now()
            session.save(update_fields=["status", "finished_at"])
            sessions += 1
    for bucket in dict.fromkeys([storage.input_bucket(), storage.output_bucket()]):
        try:
            old = [u for u in multipart.list_open(bucket, storage.prefixed("")) if u["initiated"] < cutoff]
        except storage.StorageError as exc:
            errors.append(str(exc))
            continue
        # An open direct upload is judged by its row (above), never by the server's clock.
        owned = set(UploadSession.objects.filter(status=UploadSession.Status.OPEN,
                                                 s3_upload_id__in=[u["upload_id"] for u in old])
                    .values_list("s3_upload_id", flat=True))
        for upload in old:
            if upload["upload_id"] in owned:
                continue
            try:
                multipart.abort(bucket, upload["key"], upload["upload_id"])
                aborted += 1
            except storage.ObjectNotFound:
                pass
            except storage.StorageError as exc:
                errors.append(str(exc))
    if aborted or sessions or errors:
        logger.info("upload.abandoned_aborted aborted=%s sessions=%s errors=%s", aborted, sessions, len(errors))
    return AbandonedUploads(aborted=aborted, sessions=sessions, errors=tuple(errors))
