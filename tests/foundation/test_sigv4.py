"""storage/sigv4.py writes the signature botocore's S3SigV4Auth writes, header for header.

(Whether a real server accepts it is what every test in test_storage_fast_path.py shows:
they all go through this signer to SeaweedFS, including one with a wrong secret.)
"""

import datetime
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from storage.sigv4 import Signer, host_header

NOW = datetime.datetime(2026, 11, 30, 23, 59, 58, tzinfo=datetime.UTC)
KEYS = ["plain.csv", "with space and + plus.csv", "ünïcødé/名前.json", "query?chars&and=equals#hash.txt",
        "percent%20already%2Fencoded.txt", "tilde~quote'bang!(paren)*star.txt"]
HEADER_SETS = [
    {},
    {"User-Agent": "jobplatform/1"},
    {"Content-Type": "application/json", "Content-Length": "11"},
    {"Content-Type": "text/csv", "x-amz-meta-name": "  two   spaces  ", "X-Amz-Meta-Other": "b"},
    {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==", "Cache-Control": "no-store", "Expect": "100-continue"},
]


def botocore_headers(endpoint, method, path, headers, body, *, access="AKIDEXAMPLE", secret="s3cr3t/+=",
                     region="us-east-1"):
    request = AWSRequest(method=method, url=endpoint.rstrip("/") + path, headers=dict(headers), data=body)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        S3SigV4Auth(Credentials(access, secret), "s3", region).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8333", "https://S3.Example.COM", "http://minio:9000/"])
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("method,body", [("GET", b""), ("HEAD", b""), ("PUT", b'{"rows": 3}'), ("PUT", b"")])
@pytest.mark.parametrize("headers", HEADER_SETS)
def test_the_signature_is_botocores(endpoint, key, method, body, headers):
    path = f"/bucket-1/{quote(key, safe='/~')}"
    ours = Signer(access_key="AKIDEXAMPLE", secret_key="s3cr3t/+=", region="us-east-1",
                  endpoint=endpoint).sign(method, path, headers, body, now=NOW)
    theirs = botocore_headers(endpoint, method, path, headers, body)

    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"] == "20261130T235958Z"
    assert ours["X-Amz-Content-SHA256"] == theirs["X-Amz-Content-SHA256"]
    # Every header botocore sends is sent, with the same value; ours adds only Host, which
    # botocore signs but leaves the HTTP client to send.
    assert {k: v for k, v in ours.items() if k != "Host"} == theirs
    assert ours["Host"] == host_header(endpoint)


def test_another_region_or_day_changes_the_key_and_a_new_day_derives_it_again():
    signer = Signer(access_key="AK", secret_key="SK", region="eu-west-3", endpoint="http://127.0.0.1:9000")
    first = signer.sign("GET", "/b/k", now=NOW)
    assert first["Authorization"] == botocore_headers("http://127.0.0.1:9000", "GET", "/b/k", {}, b"", access="AK",
                                                      secret="SK", region="eu-west-3")["Authorization"]
    assert "Credential=AK/20261130/eu-west-3/s3/aws4_request" in first["Authorization"]
    next_day = signer.sign("GET", "/b/k", now=NOW + datetime.timedelta(seconds=3))
    assert "Credential=AK/20261201/eu-west-3/s3/aws4_request" in next_day["Authorization"]
    assert signer.signing_key("20261201") != signer.signing_key("20261130")


def test_headers_it_sets_itself_are_not_taken_from_the_caller():
    signer = Signer(access_key="AK", secret_key="SK", region="us-east-1", endpoint="http://127.0.0.1:9000")
    forged = signer.sign("GET", "/b/k", {"authorization": "forged", "X-Amz-Date": "19700101T000000Z",
                                         "host": "evil.example", "x-amz-content-sha256": "0" * 64}, now=NOW)
    assert forged == signer.sign("GET", "/b/k", now=NOW)
    assert forged["Host"] == "127.0.0.1:9000"


@pytest.mark.parametrize("endpoint,host", [("http://127.0.0.1:80", "127.0.0.1"), ("https://h:443/x", "h"),
                                           ("https://h:8443", "h:8443"), ("http://[::1]:9000", "[::1]:9000"),
                                           ("http://User@Host.Example", "host.example")])
def test_the_host_header_leaves_out_default_ports_and_userinfo(endpoint, host):
    assert host_header(endpoint) == host


def test_a_query_string_is_refused_rather_than_signed_wrong():
    signer = Signer(access_key="AK", secret_key="SK", region="us-east-1", endpoint="http://127.0.0.1:9000")
    with pytest.raises(ValueError, match="query"):
        signer.sign("GET", "/b/k?uploads", now=NOW)
