"""The S3 backend: django-storages' S3Storage supplies the configured boto3 client.

Works against SeaweedFS, MinIO and AWS by configuration alone (settings.S3_*).
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import BinaryIO

import botocore
import botocore.exceptions
from botocore.config import Config
from django.conf import settings
from django.core.files.storage import storages

from . import fast, wire
from .errors import AccessDenied, ObjectNotFound, StorageError, StorageUnavailable
from .types import ObjectInfo

logger = logging.getLogger(__name__)

MIN_PART_SIZE = 8 * 1024 * 1024
MAX_PART_SIZE = 64 * 1024 * 1024
_TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestTimeTooSkewed", "503", "500", "502", "504"}
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound"}
_DENIED_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


# A fixed User-Agent. Without one, botocore rebuilds its telemetry User-Agent (OS,
# language, feature ids, each component sanitised character by character) twice per
# request: 15% of the client CPU of a small GET or PUT, measured with cProfile.
USER_AGENT = f"jobplatform botocore/{botocore.__version__}"


def client_config() -> Config:
    return Config(
        signature_version="s3v4",
        user_agent=USER_AGENT,
        s3={"addressing_style": settings.S3_ADDRESSING_STYLE},
        # S3-compatible servers (SeaweedFS, older MinIO) reject the CRC checksums that
        # boto3 >= 1.36 adds to every request by default; only send them when required.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": settings.S3_MAX_ATTEMPTS},
        connect_timeout=settings.S3_CONNECT_TIMEOUT,
        read_timeout=settings.S3_READ_TIMEOUT,
        max_pool_connections=20,
    )


_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def _cached(name: str, make):
    """One boto3 client per process, shared by all threads (boto3 clients are thread-safe).

    Django's ASGI handler runs each request's sync code in a fresh thread, so a
    thread-local client would be rebuilt (~150 ms) on every request. Keyed by pid as well,
    so a forked Celery child builds its own rather than sharing its parent's sockets.
    """
    key = f"{name}:{os.getpid()}"
    client_ = _clients.get(key)
    if client_ is None:
        with _clients_lock:
            client_ = _clients.get(key)
            if client_ is None:
                client_ = _clients[key] = make()
    return client_


def _make_client():
    storage = storages["inputs"]
    storage.client_config = client_config()
    return storage.connection.meta.client


def client():
    return _cached("internal", _make_client)


def warm_up() -> None:
    client()


def public_client():
    """Signs URLs with the host browsers reach (differs from the internal one in compose)."""
    if settings.S3_PUBLIC_ENDPOINT_URL == settings.S3_ENDPOINT_URL:
        return client()

    def make():
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=settings.S3_PUBLIC_ENDPOINT_URL, region_name=settings.S3_REGION,
            aws_access_key_id=settings.S3_ACCESS_KEY_ID, aws_secret_access_key=settings.S3_SECRET_ACCESS_KEY,
            config=client_config())

    return _cached("public", make)


def translate(exc: Exception, what: str) -> StorageError:
    """Map boto errors to ours: transient ones become StorageUnavailable."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _NOT_FOUND_CODES or status == 404:
            return ObjectNotFound(f"{what}: not found")
        if code in _DENIED_CODES or status == 403:
            return AccessDenied(f"{what}: access denied by object storage ({code})")
        if code in _TRANSIENT_CODES or status >= 500:
            return StorageUnavailable(f"{what}: object storage error {code or status}")
        return StorageError(f"{what}: {code}: {error.get('Message', '')}".strip())
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError,
                        botocore.exceptions.HTTPClientError, botocore.exceptions.ReadTimeoutError,
                        botocore.exceptions.IncompleteReadError, botocore.exceptions.ResponseStreamingError,
                        *fast.HTTP_ERRORS)):
        return StorageUnavailable(f"{what}: object storage unreachable ({type(exc).__name__})")
    return StorageError(f"{what}: {type(exc).__name__}: {exc}")


@contextmanager
def errors(what: str) -> Iterator[None]:
    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, *fast.HTTP_ERRORS) as exc:
        raise translate(exc, what) from exc


def head(bucket: str, key: str) -> ObjectInfo:
    with errors(f"s3://{bucket}/{key}"):
        if fast.usable(key):
            headers = fast.get().request("HEAD", bucket, key).headers
            return ObjectInfo(bucket=bucket, key=key, size=int(headers["Content-Length"]),
                              etag=headers.get("ETag", "").strip('"'), content_type=headers.get("Content-Type", ""),
                              metadata=fast.metadata_from(headers))
        r = client().head_object(Bucket=bucket, Key=key)
    return ObjectInfo(bucket=bucket, key=key, size=r["ContentLength"], etag=r.get("ETag", "").strip('"'),
                      content_type=r.get("ContentType", ""), metadata=r.get("Metadata", {}))


class ResumingReader(io.RawIOBase):
    """Streams an object; after a dropped connection it resumes with a Range request.

    botocore retries whole requests, not a body that breaks halfway; this covers that.
    """

    def __init__(self, bucket: str, key: str, max_resumes: int = 5, started: fast.StartedGet | None = None):
        self.bucket, self.key = bucket, key
        self.pos = 0
        self.resumes_left = max_resumes
        self.size = None
        self.body = None
        self.started = None
        self._open(started)

    def _open(self, started: fast.StartedGet | None = None) -> None:
        if self.body is not None:
            self._close_body()
        kwargs = {"Bucket": self.bucket, "Key": self.key}
        if self.pos:
            kwargs["Range"] = f"bytes={self.pos}-"
        with errors(f"s3://{self.bucket}/{self.key}"):
            response = started.response() if started is not None else None
            if response is not None:  # the GET sent before (a broken one is sent again below)
                self.size, self.body, self.started = int(response.headers["Content-Length"]), response, started
                return
            if fast.usable(self.key):
                headers = {"Range": kwargs["Range"]} if self.pos else None
                response = fast.get().request("GET", self.bucket, self.key, headers=headers, stream=True)
                if self.size is None:
                    self.size = int(response.headers["Content-Length"])
                self.body = response
                return
            r = client().get_object(**kwargs)
        if self.size is None:
            self.size = r["ContentLength"]
        self.body = r["Body"]

    def _close_body(self) -> None:
        body, self.body = self.body, None
        whole = self.size is not None and self.pos >= self.size
        if self.started is not None:  # its connection is its own, not the pool's
            started, self.started = self.started, None
            if not whole:
                body.close()
            started.done(whole=whole)
        elif isinstance(body, wire.Response):
            if whole:
                body.release_conn()  # read to the end: the connection goes back to the pool
            else:
                body.close()  # unread bytes would poison a pooled connection
                body.release_conn()
        else:
            body.close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.size is not None and self.pos >= self.size:
            return 0
        while True:
            try:
                data = self.body.read(len(buffer))
                break
            except (botocore.exceptions.BotoCoreError, *fast.HTTP_ERRORS) as exc:
                if self.resumes_left <= 0:
                    raise translate(exc, f"s3://{self.bucket}/{self.key}") from exc
                self.resumes_left -= 1
                self._open()
        n = len(data)
        buffer[:n] = data
        self.pos += n
        return n

    def close(self) -> None:
        if self.body is not None:
            self._close_body()
        super().close()


def open_read(bucket: str, key: str, started: fast.StartedGet | None = None) -> BinaryIO:
    return io.BufferedReader(ResumingReader(bucket, key, started=started), buffer_size=1024 * 1024)


def start_read(bucket: str, key: str) -> fast.StartedGet | None:
    return fast.start_get(bucket, key) if fast.usable(key) else None


class MultipartWriter:
    """A writable stream into S3 with a fixed memory footprint, for objects of any size.

    Parts are uploaded as they fill, a bounded number at once. Preallocated part buffers
    are filled in place and reused, so (parts in flight + 1) buffers of part size are all
    it ever holds; slicing parts off a growing bytearray instead copied each part two or
    three times and fragmented the heap of a long-lived web process. Small objects (under
    one part) go up as one PUT on commit. No object exists until commit(); abort() leaves
    no open multipart upload.
    """

    def __init__(self, bucket: str, key: str, *, content_type: str, metadata: dict | None = None):
        self.bucket, self.key, self.what = bucket, key, f"s3://{bucket}/{key}"
        self.content_type, self.metadata = content_type, metadata or {}
        self.part_size = min(max(settings.UPLOAD_PART_SIZE, MIN_PART_SIZE), MAX_PART_SIZE)
        self.max_in_flight = max(1, settings.UPLOAD_MAX_PARTS_IN_FLIGHT)
        # Buffers come back here when their part is stored; an empty queue is the back-pressure.
        self.free: queue.Queue[bytearray] = queue.Queue()
        self.buffers_made = 0
        self.buffer = self._take_buffer()
        self.filled = 0
        self.bytes_written = 0
        self.upload_id: str | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.parts: list[Future] = []

    def _take_buffer(self) -> bytearray:
        if self.buffers_made <= self.max_in_flight:  # one being filled + the ones in flight
            try:
                return self.free.get_nowait()
            except queue.Empty:
                self.buffers_made += 1
                return bytearray(self.part_size)
        while True:
            try:
                return self.free.get(timeout=1)
            except queue.Empty:
                self._raise_failed_part()

    def _raise_failed_part(self) -> None:
        for future in self.parts:
            if future.done() and future.exception() is not None:
                raise future.exception()

    def write(self, data) -> int:
        view = memoryview(data)
        n = len(view)
        while view:
            take = min(len(view), self.part_size - self.filled)
            self.buffer[self.filled:self.filled + take] = view[:take]
            self.filled += take
            view = view[take:]
            if self.filled == self.part_size:
                self._send_part()
        self.bytes_written += n
        return n

    def _send_part(self) -> None:
        if self.upload_id is None:
            with errors(self.what):
                self.upload_id = client().create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType=self.content_type,
                    Metadata=self.metadata)["UploadId"]
            self.pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="s3-part")
        self._raise_failed_part()
        number = len(self.parts) + 1
        buffer, length = self.buffer, self.filled
        self.parts.append(self.pool.submit(self._upload_part, number, buffer, length))
        self.buffer, self.filled = self._take_buffer(), 0

    def _upload_part(self, number: int, buffer: bytearray, length: int) -> dict:
        try:
            body = buffer if length == len(buffer) else memoryview(buffer)[:length].tobytes()
            with errors(f"{self.what} part {number}"):
                r = client().upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                                 PartNumber=number, Body=body)
            return {"PartNumber": number, "ETag": r["ETag"]}
        finally:
            self.free.put(buffer)

    def commit(self) -> ObjectInfo:
        if self.upload_id is None:
            body = memoryview(self.buffer)[:self.filled].tobytes()
            r = _put_object(self.bucket, self.key, body, self.content_type, self.metadata)
        else:
            if self.filled:
                self._send_part()
            parts = [f.result() for f in self.parts]
            with errors(self.what):
                r = client().complete_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts})
            self.pool.shutdown()
            self.upload_id = None
        self.buffer = bytearray()
        return ObjectInfo(bucket=self.bucket, key=self.key, size=self.bytes_written,
                          etag=r.get("ETag", "").strip('"'), content_type=self.content_type, metadata=self.metadata)

    def abort(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.upload_id is not None:
            try:
                client().abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                # Best effort: the bucket's lifecycle rule removes what is left.
                logger.warning("storage.abort_failed key=%s", self.key, exc_info=True)
            self.upload_id = None
        self.buffer = bytearray()


def _put_object(bucket: str, key: str, data: bytes, content_type: str, metadata: dict | None = None) -> dict:
    """One PUT of a whole object; returns {"ETag": ...}."""
    with errors(f"s3://{bucket}/{key}"):
        if fast.usable(key, metadata):
            headers = {"Content-Type": content_type, "Content-Length": str(len(data)),
                       **{f"x-amz-meta-{name}": str(value) for name, value in (metadata or {}).items()}}
            response = fast.get().request("PUT", bucket, key, headers=headers, body=data)
            return {"ETag": response.headers.get("ETag", "")}
        return client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                                   Metadata=metadata or {})


def put_bytes(bucket: str, key: str, data: bytes, content_type: str) -> ObjectInfo:
    r = _put_object(bucket, key, data, content_type)
    return ObjectInfo(bucket=bucket, key=key, size=len(data), etag=r.get("ETag", "").strip('"'),
                      content_type=content_type, metadata={})


def delete(bucket: str, key: str) -> None:
    with errors(f"s3://{bucket}/{key}"):
        client().delete_object(Bucket=bucket, Key=key)


def delete_prefix(bucket: str, prefix: str) -> int:
    deleted = 0
    with errors(f"s3://{bucket}/{prefix}"):
        paginator = client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client().delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
    return deleted


def list_keys(bucket: str, prefix: str = "") -> list[str]:
    with errors(f"s3://{bucket}/{prefix}"):
        paginator = client().get_paginator("list_objects_v2")
        return [o["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                for o in page.get("Contents", [])]


def presigned_get_url(bucket: str, key: str, *, expires: int, filename: str | None) -> str:
    params = {"Bucket": bucket, "Key": key}
    if filename:
        params["ResponseContentDisposition"] = content_disposition(filename)
    with errors(f"s3://{bucket}/{key}"):
        return public_client().generate_presigned_url("get_object", Params=params, ExpiresIn=expires)


def content_disposition(filename: str) -> str:
    from urllib.parse import quote

    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


# --- multipart, for presigned direct uploads -------------------------------------------------

def create_multipart_upload(bucket: str, key: str, content_type: str, metadata: dict | None = None) -> str:
    with errors(f"s3://{bucket}/{key}"):
        return client().create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type,
                                                Metadata=metadata or {})["UploadId"]


def presign_upload_part(bucket: str, key: str, upload_id: str, part_number: int, expires: int) -> str:
    with errors(f"s3://{bucket}/{key}"):
        return public_client().generate_presigned_url(
            "upload_part", Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number},
            ExpiresIn=expires)


def complete_multipart_upload(bucket: str, key: str, upload_id: str, parts: list[dict]) -> str:
    with errors(f"s3://{bucket}/{key}"):
        r = client().complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                               MultipartUpload={"Parts": parts})
    return r.get("ETag", "").strip('"')


def abort_multipart_upload(bucket: str, key: str, upload_id: str) -> None:
    with errors(f"s3://{bucket}/{key}"):
        client().abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def list_multipart_uploads(bucket: str, prefix: str = "") -> list[dict]:
    with errors(f"s3://{bucket}"):
        r = client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [{"key": u["Key"], "upload_id": u["UploadId"]} for u in r.get("Uploads", [])]


# --- buckets and health ----------------------------------------------------------------------

def ensure_bucket(bucket: str, *, abort_incomplete_days: int = 1) -> str:
    """Create the bucket if missing and add a rule that aborts stale multipart uploads."""
    c = client()
    with errors(f"s3://{bucket}"):
        try:
            c.head_bucket(Bucket=bucket)
            created = "exists"
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                raise
            kwargs = {"Bucket": bucket}
            if settings.S3_REGION and settings.S3_REGION != "us-east-1" and not settings.S3_ENDPOINT_URL:
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.S3_REGION}
            c.create_bucket(**kwargs)
            created = "created"
    try:
        c.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
            "ID": "abort-incomplete-multipart-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": abort_incomplete_days}}]})
        lifecycle = "lifecycle rule set"
    except botocore.exceptions.ClientError as exc:
        # Not every S3-compatible server implements lifecycle rules; the upload paths abort
        # their own failed uploads regardless.
        lifecycle = f"lifecycle rule not supported ({exc.response.get('Error', {}).get('Code')})"
    return f"{created}, {lifecycle}"


def check() -> None:
    with errors("object storage"):
        client().head_bucket(Bucket=settings.S3_INPUT_BUCKET)
