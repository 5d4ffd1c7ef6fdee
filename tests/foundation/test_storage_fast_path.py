"""storage/fast.py: HEAD, GET and PUT sent without the botocore client, against the real S3
server, checked against what the botocore client itself reads and writes."""

from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from django.conf import settings

import storage
from storage import fast
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
    return storage.prefixed(f"fast-path/{name}")


def test_the_fast_path_is_taken_with_the_embedded_settings():
    assert fast.usable(key_for("plain.csv"))


@pytest.mark.parametrize("name", KEYS)
def test_an_object_put_on_the_fast_path_is_what_boto3_reads_and_heads(name):
    key, data = key_for(name), f"payload of {name}\n".encode() * 3
    info = storage.put_bytes(storage.input_bucket(), key, data, "text/csv")

    got = boto().get_object(Bucket=storage.input_bucket(), Key=key)
    assert got["Body"].read() == data
    assert got["ContentType"] == "text/csv"
    assert got["ETag"].strip('"') == info.etag
    with storage.open_read(storage.input_bucket(), key) as stream:
        assert stream.read() == data
    assert storage.head(storage.input_bucket(), key) == info


@pytest.mark.parametrize("name", KEYS[:3])
def test_head_and_read_on_the_fast_path_match_the_botocore_client(name, settings):
    key = key_for(name)
    boto().put_object(Bucket=storage.input_bucket(), Key=key, Body=b"a,b\n1,2\n", ContentType="text/csv",
                      Metadata={"original-name": "people.csv"})

    fast_head = storage.head(storage.input_bucket(), key)
    with storage.open_read(storage.input_bucket(), key) as stream:
        fast_body = stream.read()
    settings.S3_FAST_PATH = False
    assert not fast.usable(key)
    client_head = storage.head(storage.input_bucket(), key)
    with storage.open_read(storage.input_bucket(), key) as stream:
        client_body = stream.read()

    assert fast_head == client_head
    assert fast_head.metadata == {"original-name": "people.csv"}
    assert fast_body == client_body == b"a,b\n1,2\n"


def test_a_small_streamed_write_with_metadata_arrives_whole_on_the_fast_path():
    key = key_for("small-with-metadata.bin")
    with storage.open_write(storage.input_bucket(), key, content_type="application/x-test",
                            metadata={"owner": "17"}) as writer:
        writer.write(b"x" * 1000)

    got = boto().head_object(Bucket=storage.input_bucket(), Key=key)
    assert (got["ContentLength"], got["ContentType"], got["Metadata"]) == (1000, "application/x-test", {"owner": "17"})


def test_keys_the_fast_path_cannot_send_exactly_go_through_the_client():
    key = key_for("double//slash.txt")
    assert not fast.usable(key)
    assert not fast.usable(key_for("dot/./segment.txt"))
    assert not fast.usable(key_for("dot/../segments.txt"))
    assert not fast.usable(key_for("x"), {"name": "ünïcødé"})

    storage.put_bytes(storage.input_bucket(), key, b"through botocore", "text/plain")

    assert boto().get_object(Bucket=storage.input_bucket(), Key=key)["Body"].read() == b"through botocore"


def test_a_missing_object_or_bucket_is_object_not_found():
    with pytest.raises(storage.ObjectNotFound):
        storage.head(storage.input_bucket(), key_for("never-written"))
    with pytest.raises(storage.ObjectNotFound):
        storage.open_read(storage.input_bucket(), key_for("never-written"))
    with pytest.raises(storage.ObjectNotFound):
        storage.head("no-such-bucket-here", key_for("x"))


def test_a_wrong_secret_is_access_denied_naming_the_servers_code(settings):
    key = key_for("guarded.txt")
    storage.put_bytes(storage.input_bucket(), key, b"guarded", "text/plain")
    settings.S3_SECRET_ACCESS_KEY = "not-the-secret"

    with pytest.raises(storage.AccessDenied):
        storage.head(storage.input_bucket(), key)
    with pytest.raises(storage.AccessDenied, match=r"SignatureDoesNotMatch|AccessDenied"):
        storage.open_read(storage.input_bucket(), key)
    with pytest.raises(storage.AccessDenied):
        storage.put_bytes(storage.input_bucket(), key, b"overwritten", "text/plain")


def test_an_unreachable_server_is_storage_unavailable(settings):
    from jobplatform.devstack import free_port

    settings.S3_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    settings.S3_MAX_ATTEMPTS = 2

    with pytest.raises(storage.StorageUnavailable, match="unreachable"):
        storage.head(storage.input_bucket(), key_for("x"))
    with pytest.raises(storage.StorageUnavailable):
        storage.put_bytes(storage.input_bucket(), key_for("x"), b"x", "text/plain")


def upstream() -> tuple[str, int]:
    parts = urlsplit(settings.S3_ENDPOINT_URL)
    return parts.hostname, parts.port


def test_a_read_cut_off_mid_body_resumes_with_a_range_request(settings):
    key = key_for("resumed.bin")
    data = bytes(range(256)) * 4096  # 1 MiB
    storage.put_bytes(storage.input_bucket(), key, data, "application/octet-stream")
    proxy = TcpProxy(*upstream(), plans=[("cut", 200_000)])
    settings.S3_ENDPOINT_URL = proxy.url
    try:
        with storage.open_read(storage.input_bucket(), key) as stream:
            got = stream.read()
    finally:
        proxy.close()

    assert got == data
    assert len(proxy.requests) == 2
    assert b"range: bytes=" in proxy.requests[1].lower()


def test_a_503_answer_is_retried_and_the_request_then_succeeds(settings):
    key = key_for("after-503.txt")
    storage.put_bytes(storage.input_bucket(), key, b"second time lucky", "text/plain")
    error = b"<Error><Code>SlowDown</Code><Message>busy</Message></Error>"
    busy = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(error), error))
    proxy = TcpProxy(*upstream(), plans=[("answer", busy), ("answer", busy)])
    settings.S3_ENDPOINT_URL = proxy.url
    settings.S3_MAX_ATTEMPTS = 3
    try:
        info = storage.head(storage.input_bucket(), key)
        settings.S3_MAX_ATTEMPTS = 1
        proxy.plans = [("answer", busy)]
        with pytest.raises(storage.StorageUnavailable, match=r"SlowDown|503"):
            storage.read_bytes(storage.input_bucket(), key, 100)
    finally:
        proxy.close()

    assert info.size == len(b"second time lucky")
    assert len(proxy.requests) == 4


def test_a_read_started_early_gives_the_same_bytes_and_keeps_its_connection():
    small, large = key_for("started-small.csv"), key_for("started-large.bin")
    storage.put_bytes(storage.input_bucket(), small, b"a,b\n1,2\n", "text/csv")
    data = bytes(range(256)) * 8192  # 2 MiB: more than one buffer
    storage.put_bytes(storage.input_bucket(), large, data, "application/octet-stream")

    started = storage.start_read(storage.input_bucket(), small)
    connection = started.conn
    with storage.open_read(storage.input_bucket(), small, started=started) as stream:
        assert stream.read() == b"a,b\n1,2\n"
    assert fast.get().spare is connection  # read to the end: kept for the next one

    started = storage.start_read(storage.input_bucket(), large)
    assert started.conn is connection
    with storage.open_read(storage.input_bucket(), large, started=started) as stream:
        assert stream.read(10) == data[:10]  # stopped early: its connection must not be reused
    assert fast.get().spare is None
    again = storage.start_read(storage.input_bucket(), large)
    assert again.conn is not connection
    with storage.open_read(storage.input_bucket(), large, started=again) as stream:
        assert stream.read() == data


def test_a_started_read_of_a_missing_object_is_object_not_found_and_a_discarded_one_costs_nothing():
    started = storage.start_read(storage.input_bucket(), key_for("not-there.csv"))
    with pytest.raises(storage.ObjectNotFound):
        storage.open_read(storage.input_bucket(), key_for("not-there.csv"), started=started)
    assert started.conn is None and fast.get().spare is None

    key = key_for("discarded.csv")
    storage.put_bytes(storage.input_bucket(), key, b"x,y\n", "text/csv")
    storage.discard_read(storage.start_read(storage.input_bucket(), key))
    storage.discard_read(None)
    assert storage.read_bytes(storage.input_bucket(), key, 100) == b"x,y\n"


def test_a_started_read_cut_off_or_refused_falls_back_to_the_ordinary_read(settings):
    key = key_for("started-cut.bin")
    data = bytes(range(256)) * 4096
    storage.put_bytes(storage.input_bucket(), key, data, "application/octet-stream")
    proxy = TcpProxy(*upstream(), plans=[("cut", 100_000)])
    settings.S3_ENDPOINT_URL = proxy.url
    try:
        started = storage.start_read(storage.input_bucket(), key)  # cut mid-body: resumed with a Range
        with storage.open_read(storage.input_bucket(), key, started=started) as stream:
            assert stream.read() == data
        assert len(proxy.requests) == 2 and b"range: bytes=" in proxy.requests[1].lower()
        proxy.plans = [("answer", b"")]
        started = storage.start_read(storage.input_bucket(), key)  # closed without an answer: sent again
        with storage.open_read(storage.input_bucket(), key, started=started) as stream:
            assert stream.read() == data
        # Its connection was closed and not kept; the ordinary read asked for the whole object.
        assert fast.get().spare is None and b"range" not in proxy.requests[-1].lower()
    finally:
        proxy.close()

    from jobplatform.devstack import free_port

    settings.S3_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    settings.S3_MAX_ATTEMPTS = 1
    assert storage.start_read(storage.input_bucket(), key) is None  # nothing listens: not even sent
    with pytest.raises(storage.StorageUnavailable):
        storage.open_read(storage.input_bucket(), key, started=None)
