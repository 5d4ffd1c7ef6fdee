"""Admission before work: a body over its path's limit is refused with 413 before Django
reads or spools any of it, declared or chunked; responses made outside Django carry the
security headers of Django's pages. Against a real Uvicorn web process."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from jobs.models import Job
from tests.conftest import WebServer
from tests.jobs.uploads.conftest import error_of, token_headers

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1024 * 1024
GIB = 1024 * MIB
SECURITY_HEADERS = ("x-content-type-options", "referrer-policy", "cross-origin-opener-policy", "x-frame-options")
# Unauthenticated writes: the body would be refused by authentication or CSRF, but only after
# Django had read it; the admission answers first.
REFUSED_PATHS = [("/login/", settings.BODY_LIMIT_LOGIN_BYTES, "page"),
                 ("/admin/login/", settings.BODY_LIMIT_LOGIN_BYTES, "page"),
                 ("/upload/", settings.BODY_LIMIT_PAGE_BYTES, "page"),
                 ("/api/v1/jobs/", settings.BODY_LIMIT_API_BYTES, "api"),
                 ("/api/v1/uploads/multipart/", settings.BODY_LIMIT_API_BYTES, "api")]


@pytest.fixture(scope="module")
def server_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("web-tmpdir")


@pytest.fixture(scope="module")
def server(django_db_setup, buckets, tmp_path_factory, server_tmp):
    """One web process whose temp dir is its own, so a spooled body would show there."""
    web = WebServer(tmp_path_factory.mktemp("web"), {"TMPDIR": str(server_tmp)})
    yield web
    web.stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def files_under(path: Path) -> list[str]:
    return sorted(str(p) for p in path.rglob("*"))


def open_files_under(pid: int, path: Path) -> list[str]:
    """The process's open file descriptors that point into `path` (a spooled body would)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith(str(path)):
            found.append(target)
    return found


def raw_request(port: int, head: str) -> bytes:
    """Sends only the request head; returns all the server sends before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        reply = b""
        while piece := sock.recv(65536):
            reply += piece
    return reply


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def headers_of(reply: bytes) -> dict[str, str]:
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in head)}


def body_of(reply: bytes) -> bytes:
    return reply.split(b"\r\n\r\n", 1)[1]


def endless(total: int, size: int = 256 * 1024):
    """A body of `total` bytes made on the fly (never held whole); chunked unless a length is declared."""
    block = b"x" * size
    for _ in range(total // size):
        yield block


def assert_refused_shape(kind: str, status: int, content_type: str, body: bytes) -> None:
    assert status == 413
    if kind == "api":
        assert content_type.startswith("application/json"), body[:200]
        error = json.loads(body)["error"]
        assert set(error) == {"code", "message", "details"} and error["code"] == "too_large"
    else:
        assert content_type.startswith("text/html"), body[:200]
        assert b"Request too large" in body


# --- declared length ----------------------------------------------------------------------

@pytest.mark.parametrize(("path", "limit", "kind"), REFUSED_PATHS)
def test_a_3_gib_declared_body_is_413_before_a_byte_is_read(server, server_tmp, path, limit, kind):
    # Only the headers are sent: an answer at all means the server did not wait for the body.
    reply = raw_request(server.port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     f"Content-Type: multipart/form-data; boundary=x\r\n"
                                     f"Content-Length: {3 * GIB}\r\n\r\n")
    headers = headers_of(reply)
    assert_refused_shape(kind, status_of(reply), headers["content-type"], body_of(reply))
    assert headers["connection"] == "close"
    if kind == "api":
        assert json.loads(body_of(reply))["error"]["details"] == {"max_bytes": limit, "content_length": 3 * GIB}
    assert files_under(server_tmp) == []


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(REFUSED_PATHS), over=st.integers(min_value=1, max_value=2**40))
def test_any_declared_length_over_the_paths_limit_is_413(server, case, over):
    path, limit, kind = case
    reply = raw_request(server.port, f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     f"Content-Length: {limit + over}\r\n\r\n")
    assert_refused_shape(kind, status_of(reply), headers_of(reply)["content-type"], body_of(reply))


def test_a_body_within_the_limit_reaches_django(server):
    with server.client() as http:
        response = http.post("/api/v1/jobs/", content=b"x" * (settings.BODY_LIMIT_API_BYTES - 10),
                             headers={"Content-Type": "application/json"})
    # Django's own answer: no credentials.
    assert response.status_code == 401 and error_of(response)["code"] == "not_authenticated"


# --- chunked bodies -----------------------------------------------------------------------

@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "declared"])
@pytest.mark.parametrize(("path", "limit", "kind"), [REFUSED_PATHS[0], REFUSED_PATHS[3]])
def test_a_50_mib_body_is_413_without_the_process_growing_or_spooling(server, server_tmp, path, limit, kind,
                                                                      declared):
    # A multipart form with a CSRF cookie is what Django would read, spooling its file parts to a
    # temp file, for the CSRF check before any view (and any authentication) runs.
    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    if declared:
        headers["Content-Length"] = str(50 * MIB)
    with server.client() as http:
        http.get("/login/")  # the CSRF cookie, as an attacker would get it
        http.post(path, content=endless(2 * limit + 256 * 1024))  # warm: a refusal's code is loaded once
        before = rss_kib(server.proc.pid)
        response = http.post(path, content=endless(50 * MIB), headers=headers)
    grown_kib = rss_kib(server.proc.pid) - before

    assert_refused_shape(kind, response.status_code, response.headers["content-type"], response.content)
    assert response.headers["connection"] == "close"
    assert grown_kib < 4 * 1024, f"the web process grew by {grown_kib} KiB"
    assert files_under(server_tmp) == [] and open_files_under(server.proc.pid, server_tmp) == []


def test_a_chunked_json_body_within_the_limit_is_handed_to_django_whole(server, user, upload):
    # Django's WSGI request reads only a body with a Content-Length; the admission gives it one.
    key = upload(user, b"a,b\n1,2\n")
    payload = json.dumps({"job_type": "CSV_ROW_COUNT", "input_object_key": key, "params": {}}).encode()
    with server.client() as http:
        response = http.post("/api/v1/jobs/", content=iter([payload[:10], payload[10:]]),
                             headers={**token_headers(user), "Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert Job.objects.get(pk=response.json()["id"]).input_key == key


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(min_value=0, max_value=2 * settings.BODY_LIMIT_LOGIN_BYTES),
       piece=st.integers(min_value=1, max_value=40_000))
def test_a_chunked_body_is_413_exactly_when_it_passes_the_limit(server, size, piece):
    limit = settings.BODY_LIMIT_LOGIN_BYTES
    body = b"a" * size
    with server.client() as http:
        response = http.post("/login/", content=iter([body[i:i + piece] for i in range(0, size, piece)]),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    if size > limit:
        assert_refused_shape("page", response.status_code, response.headers["content-type"], response.content)
    else:
        assert response.status_code == 403  # Django's answer: the CSRF check of a form post without a token


# --- security headers ---------------------------------------------------------------------

def page_security_headers(http: httpx.Client) -> dict[str, str]:
    """The security headers Django's middleware puts on a page."""
    response = http.get("/login/")
    assert response.status_code == 200
    return {name: response.headers[name] for name in SECURITY_HEADERS}


def test_security_headers_are_those_of_djangos_pages(server, user):
    with server.client() as http:
        expected = page_security_headers(http)
        refused = http.post("/api/v1/jobs/", content=endless(4 * MIB))
    with server.client() as http:
        uploaded = http.put("/api/v1/uploads/a.csv", content=b"a,b\n", headers=token_headers(user))
        anonymous = http.put("/api/v1/uploads/a.csv", content=b"a,b\n")
        wrong_method = http.get("/api/v1/uploads/a.csv", headers=token_headers(user))
    assert expected["x-frame-options"] == "DENY" and expected["x-content-type-options"] == "nosniff"
    assert expected["referrer-policy"] and expected["cross-origin-opener-policy"]
    for response, status in ((refused, 413), (uploaded, 201), (anonymous, 401), (wrong_method, 405)):
        assert response.status_code == status, response.text
        assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == expected, response.request.url


@pytest.mark.parametrize(("path", "kind"), [("/login/", "page"), ("/api/v1/jobs/", "api")])
def test_a_chunked_body_that_stalls_is_408_and_the_connection_closed(start_web_server, path, kind):
    server = start_web_server(BODY_IDLE_TIMEOUT_SECONDS="1")
    reply = raw_request(server.port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                                     "Content-Type: application/json\r\n\r\n5\r\nhello\r\n")
    headers = headers_of(reply)
    assert status_of(reply) == 408 and headers["connection"] == "close"
    if kind == "api":
        assert json.loads(body_of(reply))["error"]["code"] == "body_idle"
    else:
        assert headers["content-type"].startswith("text/html")
