"""The S3 data path (storage.objects, obstore) against the real S3 server: what it stores
is what boto3 reads, and failures arrive as storage.errors types."""

from __future__ import annotations

import os
import select
import signal
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config
from django.conf import settings

import storage
from devstack.servers import free_port
from tests.support.deadlines import within
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db

KEYS = [
    "plain.csv",
    "with space and + plus.csv",
    "ünïcødé/名前.json",
    "query?chars&and=equals#hash.txt",
    "percent%20already%2Fencoded.txt",
    "tilde~quote'bang!(paren)*star.txt",
    "semi;colon,comma:at@dollar$.txt",
]


def boto():
    return boto3.client("s3", endpoint_url=settings.S3_ENDPOINT_URL, aws_access_key_id=settings.S3_ACCESS_KEY_ID,
                        aws_secret_access_key=settings.S3_SECRET_ACCESS_KEY, region_name=settings.S3_REGION,
                        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


def key_for(name: str) -> str:
    return storage.prefixed(f"objects/{name}")


def upstream() -> tuple[str, int]:
    parts = urlsplit(settings.S3_ENDPOINT_URL)
    return parts.hostname, parts.port


@pytest.mark.parametrize("name", KEYS)
def test_bytes_round_trip_for_odd_keys_and_are_what_boto3_reads(name):
    key, data = key_for(name), f"payload of {name}\n".encode() * 3
    info = storage.put_bytes(storage.input_bucket(), key, data, "text/csv")

    got = boto().get_object(Bucket=storage.input_bucket(), Key=key)
    assert got["Body"].read() == data
    assert got["ContentType"] == "text/csv"
    assert got["ETag"].strip('"') == info.etag
    assert storage.read_bytes(storage.input_bucket(), key, len(data)) == data
    assert storage.head(storage.input_bucket(), key) == info
    assert key in storage.list_keys(storage.input_bucket(), key_for(""))


def test_head_reports_size_etag_content_type_and_metadata_as_boto3_wrote_them():
    key = key_for("described.csv")
    put = boto().put_object(Bucket=storage.input_bucket(), Key=key, Body=b"a,b\n1,2\n", ContentType="text/csv",
                            Metadata={"original-name": "people.csv"})

    info = storage.head(storage.input_bucket(), key)

    assert (info.size, info.etag, info.content_type) == (8, put["ETag"].strip('"'), "text/csv")
    assert info.metadata == {"original-name": "people.csv"}


def test_a_missing_object_is_object_not_found():
    with pytest.raises(storage.ObjectNotFound):
        storage.head(storage.input_bucket(), key_for("never-written"))
    with pytest.raises(storage.ObjectNotFound):
        storage.open_read(storage.input_bucket(), key_for("never-written"))
    with pytest.raises(storage.ObjectNotFound):
        storage.head("no-such-bucket-here", key_for("x"))


def test_a_wrong_secret_is_access_denied(settings):
    key = key_for("guarded.txt")
    storage.put_bytes(storage.input_bucket(), key, b"guarded", "text/plain")
    settings.S3_SECRET_ACCESS_KEY = "not-the-secret"

    with pytest.raises(storage.AccessDenied):
        storage.head(storage.input_bucket(), key)
    with pytest.raises(storage.AccessDenied):
        storage.open_read(storage.input_bucket(), key)
    with pytest.raises(storage.AccessDenied):
        storage.put_bytes(storage.input_bucket(), key, b"overwritten", "text/plain")


def test_a_refused_connection_is_storage_unavailable(settings):
    settings.S3_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    settings.S3_MAX_ATTEMPTS = 2

    with pytest.raises(storage.StorageUnavailable, match="unreachable"):
        storage.head(storage.input_bucket(), key_for("x"))
    with pytest.raises(storage.StorageUnavailable):
        storage.put_bytes(storage.input_bucket(), key_for("x"), b"x", "text/plain")
    with pytest.raises(storage.StorageUnavailable):
        storage.check()


def test_a_key_with_an_empty_or_dot_segment_is_a_storage_error():
    for name in ("double//slash.txt", "dot/./segment.txt", "dot/../segments.txt"):
        with pytest.raises(storage.StorageError, match="not a valid object key"):
            storage.put_bytes(storage.input_bucket(), key_for(name), b"x", "text/plain")


def test_a_read_cut_off_mid_body_resumes_with_a_range_request_and_returns_the_same_bytes(settings):
    key = key_for("resumed.bin")
    data = os.urandom(1024 * 1024)
    storage.put_bytes(storage.input_bucket(), key, data, "application/octet-stream")
    proxy = TcpProxy(*upstream(), plans=[("cut", 200_000)])
    settings.S3_ENDPOINT_URL = proxy.url
    try:
        with storage.open_read(storage.input_bucket(), key) as stream:
            got = stream.read()
    finally:
        proxy.close()

    assert got == data
    assert b"range: bytes=" in proxy.requests[-1].lower()


def test_a_503_answer_is_retried_and_the_request_then_succeeds(settings):
    key = key_for("after-503.txt")
    storage.put_bytes(storage.input_bucket(), key, b"second time lucky", "text/plain")
    error = b"<Error><Code>SlowDown</Code><Message>busy</Message></Error>"
    busy = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(error), error))
    proxy = TcpProxy(*upstream(), plans=[("answer", busy)])
    settings.S3_ENDPOINT_URL = proxy.url
    settings.S3_MAX_ATTEMPTS = 2
    try:
        info = storage.head(storage.input_bucket(), key)
        settings.S3_MAX_ATTEMPTS = 1
        proxy.plans = [("answer", busy)]
        with pytest.raises(storage.StorageUnavailable):
            storage.read_bytes(storage.input_bucket(), key, 100)
    finally:
        proxy.close()

    assert info.size == len(b"second time lucky")


def test_delete_prefix_removes_exactly_the_keys_under_it():
    inside = [key_for("folder/a.csv"), key_for("folder/sub/b.csv")]
    outside = key_for("folder-sibling.csv")
    for key in [*inside, outside]:
        storage.put_bytes(storage.input_bucket(), key, b"x", "text/csv")

    assert storage.delete_prefix(storage.input_bucket(), key_for("folder/")) == 2

    assert storage.list_keys(storage.input_bucket(), key_for("folder")) == [outside]
    storage.delete(storage.input_bucket(), outside)
    storage.delete(storage.input_bucket(), outside)  # deleting what is gone is not an error
    assert storage.list_keys(storage.input_bucket(), key_for("folder")) == []


def test_a_presigned_get_url_downloads_the_bytes_under_the_given_name():
    key = key_for("report.json")
    storage.put_bytes(storage.output_bucket(), key, b'{"ok": true}', "application/json")

    url = storage.presigned_get_url(storage.output_bucket(), key, expires=60, filename="rapport é.json")
    response = httpx.get(url)

    assert response.status_code == 200
    assert response.content == b'{"ok": true}'
    assert "filename*=UTF-8''rapport%20%C3%A9.json" in response.headers["content-disposition"]


def test_a_presigned_url_outside_the_allowed_expiry_is_refused():
    with pytest.raises(storage.StorageError, match="expiry"):
        storage.presigned_get_url(storage.output_bucket(), key_for("x"), expires=0)


def test_a_forked_child_of_a_process_that_used_storage_fails_clearly_instead_of_hanging():
    storage.put_bytes(storage.input_bucket(), key_for("before-fork.txt"), b"x", "text/plain")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what storage does, then leave without running pytest's exit
        try:
            storage.head(storage.input_bucket(), key_for("before-fork.txt"))
            os.write(write, b"answered")
        except RuntimeError as exc:
            os.write(write, str(exc).encode()[:200])
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], within(10))
        message = os.read(read, 1000) if ready else b"no answer: the child hung"
    finally:
        os.close(read)
        os.kill(pid, signal.SIGKILL) if not ready else None
        os.waitpid(pid, 0)

    assert b"does not survive fork" in message
