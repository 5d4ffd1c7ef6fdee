"""The S3 data path: reads, writes, listings and deletes through obstore.

obstore (the Rust object_store crate's bindings) spends less client CPU per request and
adds less memory to a process than a boto3 client, so processes that only move objects
(the workers) never load boto3.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, BinaryIO

import obstore
from django.conf import settings
from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from .errors import AccessDenied, ObjectNotFound, StorageError, StorageUnavailable
from .types import ObjectInfo

if TYPE_CHECKING:
    from obstore import Attributes, WritableFile

MIN_PART_SIZE = 8 * 1024 * 1024
MAX_PART_SIZE = 64 * 1024 * 1024
READ_CHUNK = 256 * 1024
# Attributes S3 stores as headers of their own; every other attribute is user metadata.
_STANDARD_ATTRIBUTES = {"Content-Type", "Content-Disposition", "Content-Encoding", "Content-Language",
                        "Cache-Control", "Storage-Class"}

_stores: dict[tuple, S3Store] = {}
_stores_lock = threading.Lock()
_requests_from: int | None = None  # the pid that sent the first request


def _config() -> tuple:
    return (settings.S3_ENDPOINT_URL, settings.S3_ACCESS_KEY_ID, settings.S3_SECRET_ACCESS_KEY,
            settings.S3_REGION, settings.S3_ADDRESSING_STYLE, settings.S3_MAX_ATTEMPTS,
            settings.S3_CONNECT_TIMEOUT, settings.S3_READ_TIMEOUT, settings.S3_RETRY_TIMEOUT,
            settings.S3_HEAD_TIMEOUT)


def _build(bucket: str, *, small: bool = False) -> S3Store:
    """One store per bucket, process and configuration; stores are thread-safe and keep
    their connections. Keyed by configuration so a changed setting takes effect.
    small: the store for metadata requests, whose every try ends after S3_HEAD_TIMEOUT."""
    key = (os.getpid(), bucket, small, *_config())
    store = _stores.get(key)
    if store is None:
        with _stores_lock:
            store = _stores.get(key)
            if store is None:
                store = _stores[key] = _make_store(bucket, request_timeout=settings.S3_HEAD_TIMEOUT if small else None)
    return store


def _make_store(bucket: str, *, request_timeout: float | None = None, probe: bool = False) -> S3Store:
    """request_timeout: every try of a request ends after that many seconds (metadata
    requests, health probes), instead of only a stalled read; probe: no retries."""
    endpoint = settings.S3_ENDPOINT_URL
    virtual_hosted = settings.S3_ADDRESSING_STYLE == "virtual" or (
        settings.S3_ADDRESSING_STYLE == "auto" and not endpoint)
    options = {} if endpoint is None else {"endpoint": endpoint}
    return S3Store(
        bucket,
        access_key_id=settings.S3_ACCESS_KEY_ID,
        secret_access_key=settings.S3_SECRET_ACCESS_KEY,
        region=settings.S3_REGION,
        virtual_hosted_style_request=virtual_hosted,
        client_options={
            "allow_http": bool(endpoint and endpoint.startswith("http://")),
            "connect_timeout": timedelta(seconds=min(settings.S3_CONNECT_TIMEOUT, request_timeout or 1e9)),
            # A stalled read is caught by read_timeout; the whole-request timeout must
            # outlast a streamed GET of a large object, which can take many minutes.
            "read_timeout": timedelta(seconds=min(settings.S3_READ_TIMEOUT, request_timeout or 1e9)),
            "timeout": timedelta(seconds=request_timeout or 24 * 3600),
        },
        retry_config=({"max_retries": 0} if probe else
                      {"max_retries": max(0, settings.S3_MAX_ATTEMPTS - 1),
                       # A metadata request begins no retry after two of its deadlines.
                       "retry_timeout": timedelta(seconds=min(settings.S3_RETRY_TIMEOUT,
                                                              2 * (request_timeout or 1e9)))}),
        **options,
    )


def store(bucket: str, *, small: bool = False) -> S3Store:
    """The store for a bucket, for sending a request now (small: a metadata request)."""
    global _requests_from
    pid = os.getpid()
    if _requests_from is None:
        _requests_from = pid
    elif _requests_from != pid:
        # obstore's Tokio runtime starts with the first request and its threads do not
        # survive fork: a forked child would hang on its first request instead.
        raise RuntimeError("object storage was used before this process was forked; obstore's runtime "
                           "does not survive fork, so a prefork parent must not send S3 requests")
    return _build(bucket, small=small)


def warm_up() -> None:
    """Builds the process's stores (no request is sent, so a prefork parent may call it)."""
    _build(settings.S3_INPUT_BUCKET)
    _build(settings.S3_OUTPUT_BUCKET)


def translate(exc: Exception, what: str) -> StorageError:
    """obstore's errors as ours: transient ones become StorageUnavailable."""
    if isinstance(exc, FileNotFoundError):
        return ObjectNotFound(f"{what}: not found")
    if isinstance(exc, (PermissionDeniedError, UnauthenticatedError)):
        return AccessDenied(f"{what}: access denied by object storage")
    if isinstance(exc, ValueError):
        return StorageError(f"{what}: not a valid object key ({exc})"[:300])
    # obstore has already retried connection errors, timeouts and 5xx answers; what is
    # left is one generic error type, so treat it as the store being unavailable.
    summary = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return StorageUnavailable(f"{what}: object storage unreachable or failing: {summary}")


@contextmanager
def errors(what: str) -> Iterator[None]:
    try:
        yield
    except (BaseError, OSError, ValueError) as exc:
        raise translate(exc, what) from exc


def _info(bucket: str, key: str, meta, attributes: Attributes) -> ObjectInfo:
    return ObjectInfo(bucket=bucket, key=key, size=meta["size"], etag=(meta.get("e_tag") or "").strip('"'),
                      content_type=attributes.get("Content-Type", ""),
                      metadata={k: v for k, v in attributes.items() if k not in _STANDARD_ATTRIBUTES})


def head(bucket: str, key: str) -> ObjectInfo:
    with errors(f"s3://{bucket}/{key}"):
        result = obstore.get(store(bucket, small=True), key, options={"head": True})
    return _info(bucket, key, result.meta, result.attributes)


class ObjectReader(io.RawIOBase):
    """A stream of one object's bytes; obstore resumes a cut connection with a Range request."""

    def __init__(self, bucket: str, key: str):
        self.what = f"s3://{bucket}/{key}"
        with errors(self.what):
            self.result = obstore.get(store(bucket), key)
            self.chunks = iter(self.result.stream(min_chunk_size=READ_CHUNK))
        self.size = self.result.meta["size"]
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.pending:
            with errors(self.what):
                chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.pending = memoryview(chunk)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def close(self) -> None:
        self.chunks = iter(())
        self.pending = memoryview(b"")
        super().close()


def open_read(bucket: str, key: str) -> BinaryIO:
    return io.BufferedReader(ObjectReader(bucket, key), buffer_size=1024 * 1024)


class _Aborted(Exception):
    """Given to obstore's writer on exit, which aborts its multipart upload."""


class Writer:
    """A writable stream into S3 whose memory grows only with the bytes written to it.

    Up to one part is kept here, in one buffer rather than a list of the chunks written (a
    body written a few bytes at a time must not cost an object per write), and a body that
    ends within it goes with one PUT. The first write past one part opens obstore's
    multipart writer, which then holds at most (parts in flight + 1) x part size. So a
    writer given a few bytes holds a few bytes, and no multipart upload exists before a
    part's worth has arrived. No object exists until commit(); abort() leaves no open
    multipart upload.
    """

    def __init__(self, bucket: str, key: str, *, content_type: str = "application/octet-stream",
                 metadata: dict | None = None):
        self.bucket, self.key, self.what = bucket, key, f"s3://{bucket}/{key}"
        self.content_type, self.metadata = content_type, dict(metadata or {})
        self.part_size = min(max(settings.UPLOAD_PART_SIZE, MIN_PART_SIZE), MAX_PART_SIZE)
        self.bytes_written = 0
        self.finished = False
        self.pending = bytearray()  # the bytes written while they fit in one part
        self.file: WritableFile | None = None  # obstore's writer, once the body is past one part

    def writable(self) -> bool:
        return True

    def _attributes(self) -> dict:
        return {"Content-Type": self.content_type, **self.metadata}

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if self.file is None and len(self.pending) + n <= self.part_size:
            self.pending += data
        else:
            with errors(self.what):
                if self.file is None:
                    self._open_multipart()
                self.file.write(data)
        self.bytes_written += n
        return n

    def _open_multipart(self) -> None:
        self.file = obstore.open_writer(store(self.bucket), self.key, attributes=self._attributes(),
                                        buffer_size=self.part_size,
                                        max_concurrency=max(1, settings.UPLOAD_MAX_PARTS_IN_FLIGHT))
        pending, self.pending = self.pending, bytearray()
        self.file.write(pending)

    def commit(self) -> ObjectInfo:
        self.finished = True
        with errors(self.what):
            if self.file is None:
                data, self.pending = self.pending, bytearray()
                result = obstore.put(store(self.bucket), self.key, data, attributes=self._attributes(),
                                     use_multipart=False)
                etag = (result["e_tag"] or "").strip('"')
            else:
                self.file.close()
                etag = head(self.bucket, self.key).etag
        return ObjectInfo(bucket=self.bucket, key=self.key, size=self.bytes_written, etag=etag,
                          content_type=self.content_type, metadata=self.metadata)

    def abort(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.pending = bytearray()
        if self.file is None:
            return  # nothing was sent: there is no multipart upload to abort
        # Leaving the writer's context with an exception aborts its multipart upload.
        with errors(self.what), contextlib.suppress(_Aborted), self.file:
            raise _Aborted


def put_bytes(bucket: str, key: str, data: bytes, content_type: str) -> ObjectInfo:
    with errors(f"s3://{bucket}/{key}"):
        result = obstore.put(store(bucket), key, data, attributes={"Content-Type": content_type})
    return ObjectInfo(bucket=bucket, key=key, size=len(data), etag=(result["e_tag"] or "").strip('"'),
                      content_type=content_type, metadata={})


def delete(bucket: str, key: str) -> None:
    with errors(f"s3://{bucket}/{key}"):
        obstore.delete(store(bucket), key)


def list_keys(bucket: str, prefix: str = "") -> list[str]:
    # object_store lists by whole path segments; list the enclosing folder and match the
    # rest of the prefix here, so "a/b" finds "a/b.csv" as S3's own prefix would.
    folder = prefix.rsplit("/", 1)[0] if "/" in prefix else None
    with errors(f"s3://{bucket}/{prefix}"):
        return [meta["path"] for batch in obstore.list(store(bucket), prefix=folder or None, chunk_size=1000)
                for meta in batch if meta["path"].startswith(prefix)]


def delete_many(bucket: str, keys: list[str]) -> None:
    # One DeleteObjects request per 1,000 keys; a key already gone is no error.
    with errors(f"s3://{bucket}"):
        for start in range(0, len(keys), 1000):
            obstore.delete(store(bucket), keys[start:start + 1000])


def delete_prefix(bucket: str, prefix: str) -> int:
    keys = list_keys(bucket, prefix)
    with errors(f"s3://{bucket}/{prefix}"):
        for start in range(0, len(keys), 1000):
            obstore.delete(store(bucket), keys[start:start + 1000])
    return len(keys)


def check() -> None:
    """One cheap listing: the server answers, the bucket exists, the keys are accepted."""
    with errors("object storage"):
        obstore.list_with_delimiter(store(settings.S3_INPUT_BUCKET), prefix="readyz-probe")


def probe_read(bucket: str, *, timeout: float) -> None:
    """One listing under readyz/ with a single try given up after `timeout` seconds: the
    server answers and the bucket exists. The store is built for this call alone, so no
    connection outlives a hung probe."""
    with errors(f"s3://{bucket}"):
        obstore.list_with_delimiter(_make_store(bucket, request_timeout=timeout, probe=True), prefix="readyz")


def probe_write(bucket: str, key: str, *, timeout: float) -> None:
    """Writes and deletes a tiny object, one try per request: the bucket has room for a write."""
    with errors(f"s3://{bucket}/{key}"):
        probe_store = _make_store(bucket, request_timeout=timeout, probe=True)
        obstore.put(probe_store, key, b"readyz", attributes={"Content-Type": "text/plain"})
        obstore.delete(probe_store, key)
