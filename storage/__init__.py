"""Object storage: the only code that talks to S3 (or, with STORAGE_BACKEND=local, disk).

Every function takes a bucket and a key. Errors are storage.errors types:
StorageUnavailable is transient (retry), the others are not.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from django.conf import settings

from .errors import AccessDenied, ObjectNotFound, StorageError, StorageUnavailable
from .types import ObjectInfo

__all__ = [
    "AccessDenied",
    "ObjectInfo",
    "ObjectNotFound",
    "StorageError",
    "StorageUnavailable",
    "backend",
    "check",
    "delete",
    "delete_prefix",
    "ensure_buckets",
    "head",
    "input_bucket",
    "list_keys",
    "new_writer",
    "open_read",
    "open_write",
    "output_bucket",
    "output_key",
    "output_prefix",
    "prefixed",
    "presigned_get_url",
    "put_bytes",
    "read_bytes",
    "upload_key",
    "warm_up",
]


def backend():
    if settings.STORAGE_BACKEND == "local":
        from . import local

        return local
    from . import s3

    return s3


def warm_up() -> None:
    """Builds the process's client now (no request is sent), so a worker's first job does
    not pay for loading the S3 service model (~0.2-0.7 s of CPU)."""
    warm = getattr(backend(), "warm_up", None)
    if warm is not None:
        warm()


def input_bucket() -> str:
    return settings.S3_INPUT_BUCKET


def output_bucket() -> str:
    return settings.S3_OUTPUT_BUCKET


def prefixed(key: str) -> str:
    """Applies the per-environment key prefix (S3_KEY_PREFIX), if any."""
    return f"{settings.S3_KEY_PREFIX}/{key}" if settings.S3_KEY_PREFIX else key


def safe_filename(name: str, default: str = "upload.bin") -> str:
    """The last path segment, without control characters or separators; never empty or a dot name."""
    name = (name or "").replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*')
    name = name.strip().strip(".")[:200]
    return name or default


def upload_key(owner_id: int, filename: str) -> str:
    return prefixed(f"uploads/{owner_id}/{uuid.uuid4()}/{safe_filename(filename)}")


def owner_upload_prefix(owner_id: int) -> str:
    return prefixed(f"uploads/{owner_id}/")


def output_prefix(job_id: uuid.UUID | str) -> str:
    """The folder in the output bucket that holds everything one job wrote."""
    return prefixed(f"{job_id}/")


def output_key(job_id: uuid.UUID | str, name: str) -> str:
    return output_prefix(job_id) + safe_filename(name, "output.bin")


def head(bucket: str, key: str) -> ObjectInfo:
    return backend().head(bucket, key)


def open_read(bucket: str, key: str, started=None) -> BinaryIO:
    """A stream of the object; `started` is what start_read returned for it, if anything."""
    if started is not None:
        return backend().open_read(bucket, key, started=started)
    return backend().open_read(bucket, key)


def start_read(bucket: str, key: str):
    """Sends the request for an object now, so that its answer arrives while the caller
    does something else; pass the result to open_read(..., started=) or to discard_read.
    None where the backend cannot (open_read then works as usual)."""
    start = getattr(backend(), "start_read", None)
    return start(bucket, key) if start is not None else None


def discard_read(started) -> None:
    """Ends a started read that will not be opened."""
    if started is not None:
        started.done(whole=False)


def new_writer(bucket: str, key: str, *, content_type: str = "application/octet-stream",
               metadata: dict | None = None):
    """A streaming writer (write, commit, abort) with bounded memory, for callers that manage
    its life themselves (the upload consumer); `open_write` wraps it for everyone else."""
    return backend().MultipartWriter(bucket, key, content_type=content_type, metadata=metadata)


@contextmanager
def open_write(bucket: str, key: str, *, content_type: str = "application/octet-stream",
               metadata: dict | None = None) -> Iterator[BinaryIO]:
    """A streaming writer; the object appears only if the block exits cleanly, else it is aborted."""
    writer = new_writer(bucket, key, content_type=content_type, metadata=metadata)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.info = writer.commit()


def put_bytes(bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
    return backend().put_bytes(bucket, key, data, content_type)


def read_bytes(bucket: str, key: str, max_bytes: int) -> bytes:
    with open_read(bucket, key) as stream:
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise StorageError(f"{bucket}/{key} is larger than {max_bytes} bytes")
    return data


def delete(bucket: str, key: str) -> None:
    backend().delete(bucket, key)


def delete_prefix(bucket: str, prefix: str) -> int:
    return backend().delete_prefix(bucket, prefix)


def list_keys(bucket: str, prefix: str = "") -> list[str]:
    return backend().list_keys(bucket, prefix)


def presigned_get_url(bucket: str, key: str, *, expires: int, filename: str | None = None) -> str:
    if not 1 <= expires <= settings.PRESIGNED_URL_MAX_EXPIRY:
        raise StorageError(f"expiry must be between 1 and {settings.PRESIGNED_URL_MAX_EXPIRY} seconds")
    return backend().presigned_get_url(bucket, key, expires=expires, filename=filename)


def ensure_buckets() -> dict[str, str]:
    return {bucket: backend().ensure_bucket(bucket) for bucket in (input_bucket(), output_bucket())}


def check() -> None:
    backend().check()
