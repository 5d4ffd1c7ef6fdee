"""The boto3 client, for what obstore has no public API for: presigned URLs (including
multipart part URLs), the direct multipart uploads a browser fills, and bucket set-up."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import boto3
import botocore
import botocore.exceptions
from botocore.config import Config
from django.conf import settings

from .errors import AccessDenied, ObjectNotFound, StorageError, StorageUnavailable

_TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestTimeTooSkewed", "503", "500", "502", "504"}
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound"}
_DENIED_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


def client_config() -> Config:
    return Config(
        signature_version="s3v4",
        s3={"addressing_style": settings.S3_ADDRESSING_STYLE},
        # S3-compatible servers (SeaweedFS, older MinIO) reject the CRC checksums that
        # boto3 >= 1.36 adds to every request by default; only send them when required.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": settings.S3_MAX_ATTEMPTS},
        # Deadlines as for obstore (jobplatform/settings/base.py); keepalives notice a vanished host.
        connect_timeout=settings.S3_CONNECT_TIMEOUT,
        read_timeout=settings.S3_READ_TIMEOUT,
        tcp_keepalive=True,
    )


_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def _cached(endpoint: str | None, make: Callable[[], object]):
    """One client per process and configuration, shared by all threads (boto3 clients are
    thread-safe and costly to build); a forked child builds its own."""
    key = (os.getpid(), endpoint, settings.S3_ACCESS_KEY_ID, settings.S3_SECRET_ACCESS_KEY, settings.S3_REGION,
           settings.S3_ADDRESSING_STYLE, settings.S3_MAX_ATTEMPTS, settings.S3_CONNECT_TIMEOUT,
           settings.S3_READ_TIMEOUT)
    client_ = _clients.get(key)
    if client_ is None:
        with _clients_lock:
            client_ = _clients.get(key)
            if client_ is None:
                client_ = _clients[key] = make()
    return client_


def _make(endpoint: str | None):
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=settings.S3_REGION,
        aws_access_key_id=settings.S3_ACCESS_KEY_ID, aws_secret_access_key=settings.S3_SECRET_ACCESS_KEY,
        config=client_config())


def client():
    return _cached(settings.S3_ENDPOINT_URL, lambda: _make(settings.S3_ENDPOINT_URL))


def public_client():
    """Signs URLs with the host browsers reach (differs from the internal one in compose)."""
    endpoint = settings.S3_PUBLIC_ENDPOINT_URL
    return _cached(endpoint, lambda: _make(endpoint))


def translate(exc: Exception, what: str) -> StorageError:
    """boto errors as ours: transient ones become StorageUnavailable."""
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
                        botocore.exceptions.HTTPClientError, botocore.exceptions.ReadTimeoutError)):
        return StorageUnavailable(f"{what}: object storage unreachable ({type(exc).__name__})")
    return StorageError(f"{what}: {type(exc).__name__}: {exc}")


@contextmanager
def errors(what: str) -> Iterator[None]:
    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise translate(exc, what) from exc
