"""PUT /api/v1/uploads/<filename> and POST /api/v1/uploads/, against a real Uvicorn server."""

from __future__ import annotations

import hashlib
import os
import re
import socket

import pytest

import storage
from jobs.models import Job
from jobs.services import create as services
from tests.conftest import wait_until
from tests.jobs.uploads.conftest import (
    MIB,
    TEST_UPLOAD_MAX_BYTES,
    error_of,
    open_uploads,
    stored_keys,
    token_headers,
)

pytestmark = pytest.mark.django_db(transaction=True)


def chunks(total: int, size: int = MIB):
    block = os.urandom(size)
    sent = 0
    while sent < total:
        piece = block[: min(size, total - sent)]
        sent += len(piece)
        yield piece


def assert_key_of(user, key: str, name: str) -> None:
    """storage.upload_key's layout: <owner prefix><uuid>/<name>, and nothing past it."""
    prefix = storage.owner_upload_prefix(user.pk)
    assert re.fullmatch(re.escape(prefix) + r"[0-9a-f-]{36}/" + re.escape(name), key), key


# --- PUT: the raw body --------------------------------------------------------------------

def test_put_streams_a_multi_part_body_into_the_owners_prefix_and_reports_its_digest(web, user, token):
    data = os.urandom(20 * MIB + 12345)  # three parts of 8 MiB
    with web.client() as http:
        response = http.put("/api/v1/uploads/data.bin", content=data, headers=token)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"bucket", "object_key", "size", "etag", "sha256", "filename"}
    assert body["size"] == len(data) and body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["bucket"] == storage.input_bucket() and body["filename"] == "data.bin" and body["etag"]
    assert_key_of(user, body["object_key"], "data.bin")
    assert storage.read_bytes(body["bucket"], body["object_key"], len(data)) == data
    assert open_uploads(user) == []


def test_a_chunked_body_without_content_length_is_streamed_too(web, user, token):
    data = b"".join(chunks(9 * MIB))
    with web.client() as http:
        response = http.put("/api/v1/uploads/chunked.bin", content=iter([data[:MIB], data[MIB:]]), headers=token)
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_empty_body_makes_a_valid_empty_object(web, user, token):
    with web.client() as http:
        response = http.put("/api/v1/uploads/empty.csv", content=b"", headers=token)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["size"] == 0 and body["sha256"] == hashlib.sha256(b"").hexdigest()
    assert storage.head(body["bucket"], body["object_key"]).size == 0


@pytest.mark.parametrize(("raw_name", "stored_name"), [
    ("..%2F..%2Fetc%2Fpasswd", "passwd"),
    ("a%2Fb%5Cc", "c"),
    ("%00%01evil%0A%1B%7Fname.txt", "evilname.txt"),
    ("x" * 300, "x" * 200),
    ("r%C3%A9sum%C3%A9%20%E2%9C%93.csv", "résumé ✓.csv"),
    ("%2E%2E", "upload.bin"),
    ("%20%20", "upload.bin"),
    ("..%5C..%5Cwindows%5Cwin.ini", "win.ini"),
])
def test_hostile_filenames_are_sanitized_and_stay_in_the_owners_prefix(web, user, token, raw_name, stored_name):
    with web.client() as http:
        response = http.put(f"/api/v1/uploads/{raw_name}", content=b"abc", headers=token)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["filename"] == stored_name
    assert_key_of(user, body["object_key"], stored_name)
    assert storage.read_bytes(body["bucket"], body["object_key"], 10) == b"abc"


def test_the_content_type_is_kept_on_the_object(web, user, token):
    with web.client() as http:
        response = http.put("/api/v1/uploads/t.csv", content=b"a,b\n", headers={**token, "Content-Type": "text/csv"})
    assert storage.head(storage.input_bucket(), response.json()["object_key"]).content_type == "text/csv"


# --- limits and disconnects ---------------------------------------------------------------

def test_a_declared_size_over_the_limit_is_413_before_any_byte_is_read(web, user, token):
    # Only the headers are sent: the answer must come without the server waiting for a body.
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(f"PUT /api/v1/uploads/huge.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: {token['Authorization']}\r\nContent-Length: {10 * 1024**3}\r\n\r\n".encode())
        reply = b""
        while piece := sock.recv(65536):  # the server closes the connection after its answer
            reply += piece
    reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413"), reply
    assert '"code":"too_large"' in reply and str(TEST_UPLOAD_MAX_BYTES) in reply
    assert stored_keys(user) == [] and open_uploads(user) == []


def test_a_chunked_body_that_crosses_the_limit_is_413_and_aborted(web, user, token):
    with web.client() as http:
        response = http.put("/api/v1/uploads/growing.bin", content=chunks(TEST_UPLOAD_MAX_BYTES + 2 * MIB),
                            headers=token)
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"
    wait_until(lambda: not open_uploads(user), what="the multipart upload aborted")
    assert stored_keys(user) == []


def test_a_client_that_disconnects_mid_upload_leaves_no_object_and_no_open_upload(web, user, token):
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(f"PUT /api/v1/uploads/partial.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: {token['Authorization']}\r\nContent-Length: {20 * MIB}\r\n\r\n".encode())
        for piece in chunks(12 * MIB):
            sock.sendall(piece)
        # A part went to storage, so a multipart upload is under way when the client goes.
        wait_until(lambda: open_uploads(user), what="a multipart upload under way")
    wait_until(lambda: not open_uploads(user), what="the multipart upload aborted")
    assert stored_keys(user) == []
    assert not Job.objects.filter(owner=user).exists()


# --- authentication, CSRF, throttling -----------------------------------------------------

def test_without_credentials_it_is_401_in_the_api_error_shape(web, user):
    with web.client() as http:
        response = http.put("/api/v1/uploads/a.csv", content=b"abc")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Token"
    assert error_of(response)["code"] == "not_authenticated"
    assert stored_keys(user) == []


def test_a_wrong_token_is_401(web, user):
    with web.client() as http:
        response = http.put("/api/v1/uploads/a.csv", content=b"abc", headers={"Authorization": "Token nope"})
    assert response.status_code == 401 and error_of(response)["code"] == "authentication_failed"


def test_a_session_with_the_csrf_header_may_upload(web, user, signed_in_cookies):
    with web.client(cookies=signed_in_cookies) as http:
        response = http.put("/api/v1/uploads/a.csv", content=b"abc",
                            headers={"X-CSRFToken": signed_in_cookies["csrftoken"]})
    assert response.status_code == 201, response.text
    assert_key_of(user, response.json()["object_key"], "a.csv")


@pytest.mark.parametrize(("csrf_header", "reason"), [(None, "CSRF token missing"), ("x" * 32, "incorrect")])
def test_a_session_without_a_matching_csrf_token_is_403(web, user, signed_in_cookies, csrf_header, reason):
    headers = {"X-CSRFToken": csrf_header} if csrf_header else {}
    with web.client(cookies=signed_in_cookies) as http:
        response = http.put("/api/v1/uploads/a.csv", content=b"abc", headers=headers)
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "permission_denied" and reason in error["message"]
    assert stored_keys(user) == []


def test_a_token_request_needs_no_csrf_token_even_with_a_session_cookie(web, user, token, signed_in_cookies):
    with web.client(cookies=signed_in_cookies) as http:
        response = http.put("/api/v1/uploads/a.csv", content=b"abc", headers=token)
    assert response.status_code == 201


def test_uploads_beyond_the_rate_are_429_with_retry_after(start_web, user, token):
    server = start_web(THROTTLE_UPLOAD="2/min")
    with server.client() as http:
        statuses = [http.put("/api/v1/uploads/a.csv", content=b"abc", headers=token).status_code for _ in range(2)]
        response = http.put("/api/v1/uploads/a.csv", content=b"abc", headers=token)
    assert statuses == [201, 201]
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert error_of(response)["code"] == "throttled"
    assert len(stored_keys(user)) == 2


@pytest.mark.parametrize(("method", "path", "allowed"), [("GET", "/api/v1/uploads/", "POST"),
                                                         ("POST", "/api/v1/uploads/a.csv", "PUT"),
                                                         ("DELETE", "/api/v1/uploads/a.csv", "PUT")])
def test_other_methods_are_405_in_the_api_error_shape(web, token, method, path, allowed):
    with web.client() as http:
        response = http.request(method, path, headers=token)
    assert response.status_code == 405 and allowed in error_of(response)["message"]


# --- POST: multipart/form-data ------------------------------------------------------------

def test_a_form_post_stores_the_file_field_and_ignores_other_fields(web, user, token):
    data = os.urandom(9 * MIB)
    with web.client() as http:
        response = http.post("/api/v1/uploads/", files={"file": ("../report 1.csv", data, "text/csv")},
                             data={"csrfmiddlewaretoken": "ignored", "note": "x"}, headers=token)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["filename"] == "report 1.csv" and body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert storage.read_bytes(body["bucket"], body["object_key"], len(data)) == data
    assert storage.head(body["bucket"], body["object_key"]).content_type == "text/csv"


def test_a_form_post_from_a_signed_in_browser_works_with_the_csrf_header(web, user, signed_in_cookies):
    with web.client(cookies=signed_in_cookies) as http:
        response = http.post("/api/v1/uploads/", files={"file": ("a.csv", b"a,b\n")},
                             headers={"X-CSRFToken": signed_in_cookies["csrftoken"]})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(("files", "code"), [
    ({"note": (None, "no file here")}, "file_missing"),
    ({"upload": ("a.csv", b"abc")}, "unexpected_file"),
    ([("file", ("a.csv", b"abc")), ("file", ("b.csv", b"def"))], "too_many_files"),
    ({"file": (None, "a plain field")}, "file_missing"),
    ({"file": ("", b"")}, "file_missing"),
])
def test_a_form_without_exactly_one_file_in_the_field_file_is_400(web, user, token, files, code):
    with web.client() as http:
        response = http.post("/api/v1/uploads/", files=files, headers=token)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == code
    wait_until(lambda: not open_uploads(user), what="no open upload")
    assert stored_keys(user) == []


def test_a_truncated_form_body_is_400_and_stores_nothing(web, user, token):
    body = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\nabc'
    with web.client() as http:
        response = http.post("/api/v1/uploads/", content=body,
                             headers={**token, "Content-Type": "multipart/form-data; boundary=XyZ"})
    assert response.status_code == 400 and error_of(response)["code"] == "malformed_form"
    assert stored_keys(user) == []


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data", "text/plain; boundary=x", ""])
def test_a_post_that_is_not_multipart_form_data_is_415(web, token, content_type):
    with web.client() as http:
        response = http.post("/api/v1/uploads/", content=b"{}", headers={**token, "Content-Type": content_type})
    assert response.status_code == 415 and error_of(response)["code"] == "unsupported_media_type"


def test_a_form_whose_file_crosses_the_limit_is_413(web, user, token):
    def body():
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        yield from chunks(TEST_UPLOAD_MAX_BYTES + MIB)
        yield b"\r\n--B--\r\n"

    with web.client() as http:
        response = http.post("/api/v1/uploads/", content=body(),
                             headers={**token, "Content-Type": "multipart/form-data; boundary=B"})
    assert response.status_code == 413
    wait_until(lambda: not open_uploads(user), what="the multipart upload aborted")
    assert stored_keys(user) == []


# --- upload, then create a job ------------------------------------------------------------

def test_an_uploaded_key_can_be_used_to_create_a_job(web, user, token):
    with web.client() as http:
        key = http.put("/api/v1/uploads/people.csv", content=b"name\nann\nbob\n", headers=token).json()["object_key"]
        api_job = http.post("/api/v1/jobs/", json={"job_type": "CSV_ROW_COUNT", "input_object_key": key},
                            headers=token)
    assert api_job.status_code == 201, api_job.text
    job = services.job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key).job
    assert job.input_size == 13 and job.input_name == "people.csv"


def test_another_user_cannot_create_a_job_from_my_upload(web, user, other_user, token):
    with web.client() as http:
        key = http.put("/api/v1/uploads/mine.csv", content=b"a\n", headers=token).json()["object_key"]
        response = http.post("/api/v1/jobs/", json={"job_type": "CSV_ROW_COUNT", "input_object_key": key},
                             headers=token_headers(other_user))
    assert response.status_code == 404


def test_jobs_on_an_empty_upload_succeed_or_fail_as_their_processor_decides(web, user, token, worker):
    from tests.conftest import wait_for_state

    with web.client() as http:
        key = http.put("/api/v1/uploads/empty.json", content=b"", headers=token).json()["object_key"]
    hashed = services.job_create(owner=user, job_type="SHA256", input_key=key).job
    parsed = services.job_create(owner=user, job_type="JSON_CANONICALIZE", input_key=key).job
    assert wait_for_state(hashed.id, "COMPLETED", 60).input_size == 0
    failed = wait_for_state(parsed.id, "FAILED", 60)
    assert failed.error_code == "invalid_json", (failed.error_code, failed.error_message)


def test_a_session_request_from_another_origin_is_403_even_with_the_token(web, user, signed_in_cookies):
    with web.client(cookies=signed_in_cookies) as http:
        response = http.put("/api/v1/uploads/a.csv", content=b"abc",
                            headers={"X-CSRFToken": signed_in_cookies["csrftoken"], "Origin": "https://evil.example"})
    assert response.status_code == 403 and "Origin checking failed" in error_of(response)["message"]


def test_a_storage_failure_mid_upload_is_a_clear_5xx_and_leaves_nothing(start_web, user, token):
    # Wrong storage credentials: object storage refuses the first part.
    server = start_web(S3_SECRET_ACCESS_KEY="not-the-secret")
    with server.client() as http:
        response = http.put("/api/v1/uploads/a.bin", content=b"".join(chunks(9 * MIB)), headers=token)
    assert response.status_code in (502, 503), response.text
    assert error_of(response)["code"] in ("storage_error", "storage_unavailable")
    assert stored_keys(user) == []
