"""Upload services: a body streamed through the web process, and direct (presigned) multipart
uploads that a client sends straight to object storage.

Both put the object at storage.upload_key(owner, name), so the key itself names its owner
and job_create's ownership check applies to either. Errors are JobError (a clear 4xx).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from dataclasses import asdict, dataclass
from urllib.parse import quote

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import storage
from jobs import metrics
from jobs.errors import JobError
from storage import multipart

from .models import UploadSession

logger = logging.getLogger(__name__)

MAX_PARTS = 10_000  # S3's limit on parts per multipart upload
SIGN_BATCH_MAX = 1_000  # part URLs per request: a page of them, not the whole list of a huge file
PART_URL_EXPIRY = 3600
CONTENT_TYPE_MAX = 255


@dataclass(frozen=True)
class UploadResult:
    bucket: str
    object_key: str
    size: int
    etag: str
    sha256: str | None  # None for direct uploads: those bytes never pass through this server
    filename: str

    def as_dict(self) -> dict:
        return asdict(self)


def clean_content_type(value: str | None) -> str:
    """The client's Content-Type if it is a plausible one, else application/octet-stream."""
    value = (value or "").strip()
    if not value or len(value) > CONTENT_TYPE_MAX or not value.isascii() or not value.isprintable() \
            or "/" not in value:
        return "application/octet-stream"
    return value


def too_large(size: int) -> JobError:
    return JobError(f"the file is larger than the upload limit of {settings.UPLOAD_MAX_BYTES} bytes",
                    code="too_large", status=413, details={"max_bytes": settings.UPLOAD_MAX_BYTES, "size": size})


def storage_failure(exc: storage.StorageError) -> JobError:
    if isinstance(exc, storage.StorageUnavailable):
        return JobError("object storage is unavailable; try again shortly", code="storage_unavailable", status=503)
    return JobError(f"object storage refused the upload: {exc}"[:500], code="storage_error", status=502)


# --- streamed through the web process --------------------------------------------------------

class StreamingUpload:
    """One object being written as its bytes arrive: size and sha256 are computed on the way.

    Blocking: call it from a worker thread, never the event loop. The caller ends it with
    exactly one of commit() or abort(); until commit() there is no object.
    """

    def __init__(self, *, owner_id: int, filename: str, content_type: str):
        self.filename = storage.safe_filename(filename)
        self.bucket = storage.input_bucket()
        self.key = storage.upload_key(owner_id, self.filename)
        self.size = 0
        self.digest = hashlib.sha256()
        self.writer = storage.new_writer(self.bucket, self.key, content_type=clean_content_type(content_type),
                                         metadata={"owner": str(owner_id), "filename": quote(self.filename)})
        self.finished = False
        self.started = time.monotonic()

    def write(self, data: bytes) -> None:
        # Checked before the bytes go anywhere, so an over-limit body never reaches storage.
        if self.size + len(data) > settings.UPLOAD_MAX_BYTES:
            raise too_large(self.size + len(data))
        self.size += len(data)
        self.digest.update(data)
        try:
            self.writer.write(data)
        except storage.StorageError as exc:
            raise storage_failure(exc) from exc

    def commit(self) -> UploadResult:
        try:
            info = self.writer.commit()
        except BaseException as exc:
            self.abort()  # a failed complete leaves the multipart upload open
            if isinstance(exc, storage.StorageError):
                raise storage_failure(exc) from exc
            raise
        self.finished = True
        logger.info("upload.stored key=%s size=%s", self.key, self.size)
        metrics.upload_stored(method="stream", size=self.size, seconds=time.monotonic() - self.started)
        return UploadResult(bucket=self.bucket, object_key=self.key, size=self.size, etag=info.etag,
                            sha256=self.digest.hexdigest(), filename=self.filename)

    def abort(self) -> None:
        """Idempotent and never raises: it runs on paths that are already failing."""
        if self.finished:
            return
        self.finished = True
        try:
            self.writer.abort()
        except Exception:  # the periodic clean-up (uploads_abort_abandoned) aborts what this leaves
            logger.exception("upload.abort_failed key=%s", self.key)
        logger.info("upload.aborted key=%s after=%s bytes", self.key, self.size)


def upload_begin(*, owner, filename: str, content_type: str = "") -> StreamingUpload:
    return StreamingUpload(owner_id=owner.pk, filename=filename, content_type=content_type)


# --- direct to storage: presigned multipart --------------------------------------------------

def part_size_for(size: int) -> int:
    """At least the configured part size (8..64 MiB), larger when needed to stay within 10,000 parts."""
    base = min(max(settings.UPLOAD_PART_SIZE, 8 * 1024**2), 64 * 1024**2)
    needed = math.ceil(size / MAX_PARTS)
    mib = 1024**2
    return max(base, math.ceil(needed / mib) * mib)


def multipart_create(*, owner, filename: str, size: int, content_type: str = "") -> UploadSession:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise JobError("size must be a whole number of bytes, at least 1 (send an empty file with "
                       "PUT /api/v1/uploads/<filename>)", code="invalid_size")
    if size > settings.UPLOAD_MAX_BYTES:
        raise too_large(size)
    name = storage.safe_filename(filename)
    bucket, key = storage.input_bucket(), storage.upload_key(owner.pk, name)
    part_size = part_size_for(size)
    content_type = clean_content_type(content_type)
    try:
        upload_id = multipart.create(bucket, key, content_type=content_type)
    except storage.StorageError as exc:
        raise storage_failure(exc) from exc
    session = UploadSession.objects.create(
        owner=owner, s3_upload_id=upload_id, bucket=bucket, key=key, filename=name, content_type=content_type,
        size=size, part_size=part_size, part_count=math.ceil(size / part_size))
    logger.info("upload.direct_created id=%s key=%s size=%s", session.id, key, size)
    return session


def _open_session(*, owner, upload_id, lock: bool = False) -> UploadSession:
    # Another user's upload is a 404, the same as one that does not exist or a malformed id.
    try:
        upload_id = uuid.UUID(str(upload_id))
    except ValueError:
        raise JobError("upload not found", code="not_found", status=404) from None
    sessions = UploadSession.objects.filter(owner=owner)
    if lock:
        sessions = sessions.select_for_update()
    session = sessions.filter(pk=upload_id).first()
    if session is None:
        raise JobError("upload not found", code="not_found", status=404)
    if session.status != UploadSession.Status.OPEN:
        raise JobError(f"this upload is already {session.status.lower()}", code="upload_finished", status=409)
    return session


def _part_number(value, session: UploadSession, code: str = "invalid_part_number") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= session.part_count:
        raise JobError(f"part numbers must be whole numbers from 1 to {session.part_count}, got {value!r}"[:300],
                       code=code)
    return value


def multipart_sign_parts(*, owner, upload_id, part_numbers: list) -> list[dict]:
    session = _open_session(owner=owner, upload_id=upload_id)
    if not isinstance(part_numbers, list) or not part_numbers or len(part_numbers) > SIGN_BATCH_MAX:
        raise JobError(f"part_numbers must be a list of 1 to {SIGN_BATCH_MAX} part numbers",
                       code="invalid_part_number")
    numbers = sorted({_part_number(n, session) for n in part_numbers})
    try:
        return [{"part_number": n, "url": multipart.sign_part(
            session.bucket, session.key, session.s3_upload_id, n, expires=PART_URL_EXPIRY,
            content_length=multipart.part_length(session.size, session.part_size, n))} for n in numbers]
    except storage.StorageError as exc:
        raise storage_failure(exc) from exc


def _clean_parts(parts, session: UploadSession) -> list[tuple[int, str]]:
    if not isinstance(parts, list) or not parts:
        raise JobError("parts must be a non-empty list of {part_number, etag}", code="invalid_parts")
    cleaned: dict[int, str] = {}
    for part in parts:
        if not isinstance(part, dict):
            raise JobError("each part must be an object {part_number, etag}", code="invalid_parts")
        number = _part_number(part.get("part_number"), session, "invalid_parts")
        etag = part.get("etag")
        if not isinstance(etag, str) or not etag.strip() or len(etag) > 256 or not etag.isprintable():
            raise JobError(f"part {number}: etag must be the ETag header S3 returned for it", code="invalid_parts")
        if number in cleaned:
            raise JobError(f"part {number} is listed twice", code="invalid_parts")
        cleaned[number] = etag.strip()
    if len(cleaned) != session.part_count:
        missing = sorted(set(range(1, session.part_count + 1)) - set(cleaned))[:10]
        raise JobError(f"all {session.part_count} parts are needed; missing {missing}", code="invalid_parts",
                       details={"missing": missing})
    return sorted(cleaned.items())


def _finish(session: UploadSession, status: str) -> None:
    session.status = status
    session.finished_at = timezone.now()
    session.save(update_fields=["status", "finished_at"])


def multipart_complete(*, owner, upload_id, parts) -> UploadResult:
    """Joins the parts, then checks the object against what the owner declared.

    The row is locked for the whole call, so two completes of one upload cannot both run.
    """
    with transaction.atomic():
        session = _open_session(owner=owner, upload_id=upload_id, lock=True)
        cleaned = _clean_parts(parts, session)
        try:
            etag = multipart.complete(session.bucket, session.key, session.s3_upload_id, cleaned)
            info = storage.head(session.bucket, session.key)
        except storage.StorageUnavailable as exc:
            raise storage_failure(exc) from exc
        except storage.StorageError as exc:
            # e.g. InvalidPart: an ETag that does not match. The upload stays open to retry.
            raise JobError(f"object storage refused to complete the upload: {exc}"[:500],
                           code="invalid_parts") from exc
        if info.size != session.size:
            try:
                storage.delete(session.bucket, session.key)
            except storage.StorageError:
                logger.exception("upload.direct_delete_failed key=%s", session.key)
            _finish(session, UploadSession.Status.ABORTED)
            logger.info("upload.direct_size_mismatch id=%s declared=%s got=%s", session.id, session.size, info.size)
            # Committed with the ABORTED status: raising inside atomic() would roll it back.
            error = JobError(f"the uploaded object is {info.size} bytes but {session.size} were declared; "
                             "it was removed", code="size_mismatch",
                             details={"declared": session.size, "uploaded": info.size})
        else:
            _finish(session, UploadSession.Status.COMPLETED)
            error = None
    if error is not None:
        raise error
    logger.info("upload.direct_completed id=%s key=%s size=%s", session.id, session.key, info.size)
    metrics.upload_stored(method="direct", size=info.size,
                          seconds=(session.finished_at - session.created_at).total_seconds())
    return UploadResult(bucket=session.bucket, object_key=session.key, size=info.size,
                        etag=etag or info.etag, sha256=None, filename=session.filename)


def session_abort(session: UploadSession) -> None:
    """Aborts a session's multipart upload on the server and marks it ABORTED; the caller
    holds the row locked."""
    try:
        multipart.abort(session.bucket, session.key, session.s3_upload_id)
    except storage.ObjectNotFound:
        pass  # already gone on the server (e.g. its lifecycle rule): the goal is reached
    except storage.StorageError as exc:
        raise storage_failure(exc) from exc
    _finish(session, UploadSession.Status.ABORTED)


def multipart_abort(*, owner, upload_id) -> None:
    with transaction.atomic():
        session = _open_session(owner=owner, upload_id=upload_id, lock=True)
        session_abort(session)
    logger.info("upload.direct_aborted id=%s key=%s", session.id, session.key)
