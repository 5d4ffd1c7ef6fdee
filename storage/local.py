"""The local-filesystem backend, for a deployment with no S3 (STORAGE_BACKEND=local).

Objects are files under LOCAL_STORAGE_ROOT/<bucket>/<key>; "presigned" URLs are signed
links to a Django view. Direct-to-storage multipart uploads are S3-only.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core import signing
from django.urls import reverse

from .errors import ObjectNotFound, StorageError
from .types import ObjectInfo

SIGNING_SALT = "storage.local.download"


def _path(bucket: str, key: str) -> Path:
    root = (Path(settings.LOCAL_STORAGE_ROOT) / bucket).resolve()
    path = (root / key).resolve()
    if root not in path.parents:
        raise StorageError(f"object key escapes its bucket: {key!r}")
    return path


def _etag(path: Path) -> str:
    stat = path.stat()
    return hashlib.md5(f"{stat.st_size}:{stat.st_mtime_ns}".encode(), usedforsecurity=False).hexdigest()


def head(bucket: str, key: str) -> ObjectInfo:
    path = _path(bucket, key)
    if not path.is_file():
        raise ObjectNotFound(f"{bucket}/{key}: not found")
    return ObjectInfo(bucket=bucket, key=key, size=path.stat().st_size, etag=_etag(path))


def open_read(bucket: str, key: str) -> BinaryIO:
    path = _path(bucket, key)
    if not path.is_file():
        raise ObjectNotFound(f"{bucket}/{key}: not found")
    return open(path, "rb")


class Writer(io.RawIOBase):
    """Writes beside the target and renames on commit, so readers never see half a file."""

    def __init__(self, bucket: str, key: str, *, content_type: str = "", metadata: dict | None = None):
        self.bucket, self.key, self.content_type = bucket, key, content_type
        self.target = _path(bucket, key)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.target.parent, prefix=".part-")
        self.file = os.fdopen(fd, "wb")
        self.bytes_written = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.file.write(data)
        self.bytes_written += len(data)
        return len(data)

    def commit(self) -> ObjectInfo:
        self.file.close()
        os.replace(self.tmp, self.target)
        return ObjectInfo(bucket=self.bucket, key=self.key, size=self.bytes_written, etag=_etag(self.target),
                          content_type=self.content_type)

    def abort(self) -> None:
        self.file.close()
        Path(self.tmp).unlink(missing_ok=True)


def put_bytes(bucket: str, key: str, data: bytes, content_type: str) -> ObjectInfo:
    writer = Writer(bucket, key, content_type=content_type)
    writer.write(data)
    return writer.commit()


def delete(bucket: str, key: str) -> None:
    _path(bucket, key).unlink(missing_ok=True)


def list_keys(bucket: str, prefix: str = "") -> list[str]:
    root = Path(settings.LOCAL_STORAGE_ROOT) / bucket
    if not root.exists():
        return []
    keys = (str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".part-"))
    return sorted(k for k in keys if k.startswith(prefix))


def delete_many(bucket: str, keys: list[str]) -> None:
    for key in keys:
        delete(bucket, key)


def delete_prefix(bucket: str, prefix: str) -> int:
    keys = list_keys(bucket, prefix)
    for key in keys:
        delete(bucket, key)
    return len(keys)


def presigned_get_url(bucket: str, key: str, *, expires: int, filename: str | None) -> str:
    token = signing.dumps({"b": bucket, "k": key, "f": filename or "", "e": expires}, salt=SIGNING_SALT)
    return reverse("local-object-download", args=[token])


def unsign(token: str) -> dict:
    """Reads a download token; raises signing.BadSignature (or SignatureExpired)."""
    data = signing.loads(token, salt=SIGNING_SALT, max_age=settings.PRESIGNED_URL_MAX_EXPIRY)
    signing.loads(token, salt=SIGNING_SALT, max_age=data["e"])
    return data


def ensure_bucket(bucket: str) -> str:
    (Path(settings.LOCAL_STORAGE_ROOT) / bucket).mkdir(parents=True, exist_ok=True)
    return "directory ready"


def check() -> None:
    root = Path(settings.LOCAL_STORAGE_ROOT)
    if not os.access(root / settings.S3_INPUT_BUCKET, os.W_OK):
        raise StorageError(f"{root / settings.S3_INPUT_BUCKET} is not writable")
