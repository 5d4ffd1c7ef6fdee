"""Resumable direct uploads on the route shape of Uppy Companion's S3 multipart API.

The client picks its part size and PUTs the parts straight to S3 through presigned URLs; it
names an upload by S3's UploadId and key, as Companion's clients do. A client that lost its
connection, or a reloaded page, lists the parts already stored and sends only the others.

The row (UploadSession) ties the UploadId and key to their owner: another user's, or an
unknown pair, is 404. A part signed with its SHA-256 (checksumSHA256, which the upload page
sends) must carry it in x-amz-checksum-sha256, and the store refuses a body that does not
match. Completing checks the client's part list against ListParts (each part stored, with that
ETag; every part but the last at least S3's minimum), then reads the object back once to
record its SHA-256: part checksums do not add up to the whole object's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import storage
from jobs.errors import JobError
from storage import multipart

from .models import UploadSession
from .services import (
    MAX_PARTS,
    PART_URL_EXPIRY,
    SIGN_BATCH_MAX,
    UploadResult,
    clean_content_type,
    session_abort,
    storage_failure,
    too_large,
)

logger = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024**2  # S3's minimum for every part but the last
HASH_CHUNK = 1024**2


@dataclass(frozen=True)
class CreatedUpload:
    upload_id: str
    key: str
    bucket: str


def _declared_size(metadata: dict) -> int | None:
    """The size a client may declare in metadata.size (a number or its decimal string)."""
    value = metadata.get("size")
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise JobError("metadata.size must be a whole number of bytes", code="invalid_size")
    try:
        size = int(value)
    except ValueError:
        raise JobError("metadata.size must be a whole number of bytes", code="invalid_size") from None
    if size < 1 or size > 2**62:
        raise JobError("metadata.size must be at least 1 byte (send empty files with PUT "
                       "/api/v1/uploads/<filename>)", code="invalid_size")
    if size > settings.UPLOAD_MAX_BYTES:
        raise too_large(size)
    return size


def s3_multipart_create(*, owner, filename: str, content_type: str = "", metadata: dict | None = None) -> CreatedUpload:
    size = _declared_size(metadata or {})
    name = storage.safe_filename(filename)
    bucket, key = storage.input_bucket(), storage.upload_key(owner.pk, name)
    content_type = clean_content_type(content_type)
    try:
        upload_id = multipart.create(bucket, key, content_type=content_type)
    except storage.StorageError as exc:
        raise storage_failure(exc) from exc
    UploadSession.objects.create(owner=owner, s3_upload_id=upload_id, bucket=bucket, key=key, filename=name,
                                 content_type=content_type, size=size)
    logger.info("upload.resumable_created key=%s size=%s", key, size)
    return CreatedUpload(upload_id=upload_id, key=key, bucket=bucket)


def _session(*, owner, upload_id: str, key: str, lock: bool = False) -> UploadSession:
    # Another user's upload is a 404, the same as an unknown one: nothing tells them it exists.
    sessions = UploadSession.objects.filter(owner=owner, s3_upload_id=upload_id, key=key)
    if lock:
        sessions = sessions.select_for_update()
    session = sessions.first() if upload_id and key else None
    if session is None:
        raise JobError("upload not found", code="not_found", status=404)
    if session.status != UploadSession.Status.OPEN:
        raise JobError(f"this upload is already {session.status.lower()}", code="upload_finished", status=409)
    return session


def _part_number(value) -> int:
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        number = int(value)
    if number is None or not 1 <= number <= MAX_PARTS:
        raise JobError(f"part numbers must be whole numbers from 1 to {MAX_PARTS}, got {value!r}"[:300],
                       code="invalid_part_number")
    return number


def s3_multipart_list_parts(*, owner, upload_id: str, key: str) -> list[dict]:
    session = _session(owner=owner, upload_id=upload_id, key=key)
    try:
        return multipart.list_parts(session.bucket, session.key, session.s3_upload_id,
                                    page_size=settings.UPLOAD_LIST_PARTS_PAGE_SIZE)
    except storage.ObjectNotFound:
        raise JobError("upload not found", code="not_found", status=404) from None
    except storage.StorageError as exc:
        raise storage_failure(exc) from exc


def _checksum(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != hashlib.sha256().digest_size:
        raise JobError("checksumSHA256 must be the base64 of a part's 32-byte SHA-256", code="invalid_checksum")
    return value


def _sign(session: UploadSession, number: int, checksum: str | None = None) -> str:
    try:
        return multipart.sign_part(session.bucket, session.key, session.s3_upload_id, number,
                                   expires=PART_URL_EXPIRY, checksum_sha256=checksum)
    except storage.StorageError as exc:
        raise storage_failure(exc) from exc


def s3_multipart_sign_part(*, owner, upload_id: str, key: str, part_number, checksum_sha256: str | None = None) -> dict:
    """{url, expires}; given the part's SHA-256 (base64), also the header the PUT must carry,
    which the store checks the body against."""
    number = _part_number(part_number)
    checksum = _checksum(checksum_sha256)
    session = _session(owner=owner, upload_id=upload_id, key=key)
    signed = {"url": _sign(session, number, checksum), "expires": PART_URL_EXPIRY}
    if checksum:
        signed["headers"] = {"x-amz-checksum-sha256": checksum}
    return signed


def s3_multipart_sign_batch(*, owner, upload_id: str, key: str, part_numbers: str) -> dict:
    raw = [n for n in (part_numbers or "").split(",") if n.strip()]
    if not raw or len(raw) > SIGN_BATCH_MAX:
        raise JobError(f"partNumbers must be 1 to {SIGN_BATCH_MAX} comma-separated part numbers",
                       code="invalid_part_number")
    numbers = sorted({_part_number(n.strip()) for n in raw})
    session = _session(owner=owner, upload_id=upload_id, key=key)
    return {"presignedUrls": {str(n): _sign(session, n) for n in numbers}}


def _clean_parts(parts) -> list[tuple[int, str]]:
    if not isinstance(parts, list) or not parts or len(parts) > MAX_PARTS:
        raise JobError(f"parts must be a list of 1 to {MAX_PARTS} {{PartNumber, ETag}}", code="invalid_parts")
    cleaned: dict[int, str] = {}
    for part in parts:
        if not isinstance(part, dict):
            raise JobError("each part must be an object {PartNumber, ETag}", code="invalid_parts")
        try:
            number = _part_number(part.get("PartNumber"))
        except JobError as exc:
            raise JobError(exc.message, code="invalid_parts") from None
        etag = part.get("ETag")
        if not isinstance(etag, str) or not etag.strip('" ') or len(etag) > 256 or not etag.isprintable():
            raise JobError(f"part {number}: ETag must be the ETag header S3 returned for it", code="invalid_parts")
        if number in cleaned:
            raise JobError(f"part {number} is listed twice", code="invalid_parts")
        cleaned[number] = etag.strip()
    return sorted(cleaned.items())


def _check_against_stored(session: UploadSession, parts: list[tuple[int, str]]) -> int:
    """The object's size once joined; a part the store does not hold as the client says is 400."""
    stored = {p["PartNumber"]: p for p in multipart.list_parts(
        session.bucket, session.key, session.s3_upload_id, page_size=settings.UPLOAD_LIST_PARTS_PAGE_SIZE)}
    total = 0
    for index, (number, etag) in enumerate(parts):
        part = stored.get(number)
        if part is None or part["ETag"].strip('"') != etag.strip('"'):
            raise JobError(f"part {number} is not stored with ETag {etag}; list the parts and send them again",
                           code="invalid_parts", details={"part_number": number})
        if index < len(parts) - 1 and part["Size"] < MIN_PART_SIZE:
            raise JobError(f"part {number} is {part['Size']} bytes; every part but the last must be at least "
                           f"{MIN_PART_SIZE} bytes", code="invalid_parts", details={"part_number": number})
        total += part["Size"]
    return total


def _finish(session: UploadSession, status: str) -> None:
    session.status = status
    session.finished_at = timezone.now()
    session.save(update_fields=["status", "finished_at", "size"])


def _abort_quietly(session: UploadSession) -> None:
    try:
        multipart.abort(session.bucket, session.key, session.s3_upload_id)
    except storage.StorageError:  # the periodic clean-up aborts what is left open
        logger.warning("upload.resumable_abort_failed key=%s", session.key, exc_info=True)


def object_sha256(bucket: str, key: str) -> tuple[str, int]:
    """Hex SHA-256 and size of a stored object, streamed in 1 MiB reads."""
    digest, size = hashlib.sha256(), 0
    with storage.open_read(bucket, key) as stream:
        for chunk in iter(lambda: stream.read(HASH_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def s3_multipart_complete(*, owner, upload_id: str, key: str, parts) -> UploadResult:
    """Joins the parts once they check out against the store, then records the object's SHA-256.

    The row lock covers the check and the join, so two completes cannot both run; the hash is
    read after that commits, so no transaction stays open while a large object streams back.
    """
    cleaned = _clean_parts(parts)
    error: JobError | None = None
    with transaction.atomic():
        session = _session(owner=owner, upload_id=upload_id, key=key, lock=True)
        try:
            size = _check_against_stored(session, cleaned)
        except storage.StorageError as exc:
            raise storage_failure(exc) from exc
        if size > settings.UPLOAD_MAX_BYTES:
            _abort_quietly(session)
            _finish(session, UploadSession.Status.ABORTED)
            # Committed with the ABORTED status: raising inside atomic() would roll it back.
            error = too_large(size)
        elif session.size is not None and size != session.size:
            error = JobError(f"the parts hold {size} bytes but {session.size} were declared", code="size_mismatch",
                             details={"declared": session.size, "uploaded": size})
        else:
            try:
                etag = multipart.complete(session.bucket, session.key, session.s3_upload_id, cleaned)
            except storage.StorageUnavailable as exc:
                raise storage_failure(exc) from exc
            except storage.StorageError as exc:
                raise JobError(f"object storage refused to complete the upload: {exc}"[:500],
                               code="invalid_parts") from exc
            session.size = size
            _finish(session, UploadSession.Status.COMPLETED)
    if error is not None:
        raise error
    started = time.monotonic()
    try:
        sha256, read = object_sha256(session.bucket, session.key)
    except storage.StorageError:
        # The object is complete and usable; only its hash is not known.
        logger.warning("upload.resumable_hash_failed key=%s", session.key, exc_info=True)
        sha256, read = None, size
    if sha256 is not None:
        UploadSession.objects.filter(pk=session.pk).update(sha256=sha256)
    logger.info("upload.resumable_completed key=%s size=%s parts=%s hash_seconds=%.2f", session.key, read,
                len(cleaned), time.monotonic() - started)
    return UploadResult(bucket=session.bucket, object_key=session.key, size=read, etag=etag, sha256=sha256,
                        filename=session.filename)


def object_location(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{quote(key)}"


def s3_multipart_abort(*, owner, upload_id: str, key: str) -> None:
    with transaction.atomic():
        session = _session(owner=owner, upload_id=upload_id, key=key, lock=True)
        session_abort(session)
    logger.info("upload.resumable_aborted key=%s", session.key)
