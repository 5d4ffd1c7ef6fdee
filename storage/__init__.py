"""Object storage: the only code that talks to S3 (or, with STORAGE_BACKEND=local, disk).

Every function takes a bucket and a key. Errors are storage.errors types:
StorageUnavailable is transient (retry), the others are not. The S3 data path is
storage.objects (obstore); presigned URLs and bucket set-up are storage.presign and
storage.buckets (boto3); direct multipart uploads are storage.multipart.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from django.conf import settings

from . import local, objects
from .errors import AccessDenied, ObjectNotFound, StorageError, StorageUnavailable
from .keys import (
    content_disposition,
    output_key,
    output_prefix,
    owner_upload_prefix,
    prefixed,
    safe_filename,
    upload_key,
)
from .types import ObjectInfo

__all__ = [
    "AccessDenied",
    "ObjectInfo",
    "ObjectNotFound",
    "StorageError",
    "StorageUnavailable",
    "check",
    "content_disposition",
    "delete",
    "delete_many",
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
    "owner_upload_prefix",
    "prefixed",
    "presigned_get_url",
    "put_bytes",
    "read_bytes",
    "safe_filename",
    "upload_key",
    "warm_up",
]


def backend():
    """The module that moves objects: storage.objects (S3) or storage.local (disk)."""
    return local if settings.STORAGE_BACKEND == "local" else objects


def warm_up() -> None:
    """Builds the process's S3 stores now (no request is sent), so the first job or upload
    does not pay for it."""
    if settings.STORAGE_BACKEND == "s3":
        objects.warm_up()


def input_bucket() -> str:
    return settings.S3_INPUT_BUCKET


def output_bucket() -> str:
    return settings.S3_OUTPUT_BUCKET


def head(bucket: str, key: str) -> ObjectInfo:
    return backend().head(bucket, key)


def open_read(bucket: str, key: str) -> BinaryIO:
    """A stream of the object's bytes."""
    return backend().open_read(bucket, key)


def new_writer(bucket: str, key: str, *, content_type: str = "application/octet-stream",
               metadata: dict | None = None):
    """A streaming writer (write, commit, abort) with bounded memory, for callers that manage
    its life themselves (the upload consumer); `open_write` wraps it for everyone else."""
    return backend().Writer(bucket, key, content_type=content_type, metadata=metadata)


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


def delete_many(bucket: str, keys: list[str]) -> None:
    """Deletes the keys in bulk (S3 DeleteObjects); keys already gone are no error."""
    backend().delete_many(bucket, keys)


def delete_prefix(bucket: str, prefix: str) -> int:
    return backend().delete_prefix(bucket, prefix)


def list_keys(bucket: str, prefix: str = "") -> list[str]:
    return backend().list_keys(bucket, prefix)


def presigned_get_url(bucket: str, key: str, *, expires: int, filename: str | None = None) -> str:
    if not 1 <= expires <= settings.PRESIGNED_URL_MAX_EXPIRY:
        raise StorageError(f"expiry must be between 1 and {settings.PRESIGNED_URL_MAX_EXPIRY} seconds")
    if settings.STORAGE_BACKEND == "local":
        return local.presigned_get_url(bucket, key, expires=expires, filename=filename)
    # boto3 is loaded only by the processes that sign URLs (the web), never by a worker.
    from . import presign

    return presign.presigned_get_url(bucket, key, expires=expires, filename=filename)


def ensure_buckets() -> dict[str, str]:
    if settings.STORAGE_BACKEND == "local":
        ensure = local.ensure_bucket
    else:
        from . import buckets  # boto3: see presigned_get_url

        ensure = buckets.ensure_bucket
    return {bucket: ensure(bucket) for bucket in (input_bucket(), output_bucket())}


def check() -> None:
    backend().check()
