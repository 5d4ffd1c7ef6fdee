"""Direct uploads under /api/v1/uploads/multipart/: the client PUTs parts straight to S3."""

from __future__ import annotations

import os

import httpx
import pytest

import storage
from jobs.services import create as services
from jobs.uploads.models import UploadSession
from storage.boto import client
from tests.jobs.uploads.conftest import MIB, TEST_UPLOAD_MAX_BYTES, error_of, open_uploads, stored_keys, token_headers

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/api/v1/uploads/multipart/"


def create(http, headers, *, size: int, filename: str = "big.bin") -> httpx.Response:
    return http.post(BASE, json={"filename": filename, "size": size, "content_type": "application/x-test"},
                     headers=headers)


def send_parts(http, headers, upload: dict, data: bytes) -> list[dict]:
    """Signs every part, PUTs its bytes to S3 (not to us) and collects the ETags S3 returns."""
    numbers = list(range(1, upload["part_count"] + 1))
    signed = http.post(f"{BASE}{upload['upload_id']}/parts", json={"part_numbers": numbers}, headers=headers)
    assert signed.status_code == 200, signed.text
    parts = []
    with httpx.Client(timeout=60) as s3:
        for part in signed.json()["parts"]:
            start = (part["part_number"] - 1) * upload["part_size"]
            put = s3.put(part["url"], content=data[start:start + upload["part_size"]])
            assert put.status_code == 200, put.text
            parts.append({"part_number": part["part_number"], "etag": put.headers["ETag"]})
    return parts


def test_a_file_sent_in_parts_to_presigned_urls_becomes_the_declared_object(web, user, token):
    data = os.urandom(9 * MIB + 7)
    with web.client() as http:
        created = create(http, token, size=len(data), filename="../big data.bin")
        assert created.status_code == 201, created.text
        upload = created.json()
        assert upload["part_count"] == 2 and upload["part_size"] == 8 * MIB
        assert upload["object_key"].startswith(storage.owner_upload_prefix(user.pk))
        assert upload["object_key"].endswith("/big data.bin")
        completed = http.post(f"{BASE}{upload['upload_id']}/complete",
                              json={"parts": send_parts(http, token, upload, data)}, headers=token)
    assert completed.status_code == 201, completed.text
    body = completed.json()
    assert body == {"bucket": storage.input_bucket(), "object_key": upload["object_key"], "size": len(data),
                    "etag": body["etag"], "sha256": None, "filename": "big data.bin"}
    assert storage.read_bytes(body["bucket"], body["object_key"], len(data)) == data
    assert open_uploads(user) == []
    # Upload, then create: the key works for a job like any other upload.
    job = services.job_create(owner=user, job_type="SHA256", input_key=body["object_key"]).job
    assert job.input_size == len(data)


def test_a_part_put_of_another_length_than_the_part_is_refused_by_the_store(web, user, token):
    with web.client() as http:
        upload = create(http, token, size=100).json()
        signed = http.post(f"{BASE}{upload['upload_id']}/parts", json={"part_numbers": [1]}, headers=token)
    url = signed.json()["parts"][0]["url"]
    with httpx.Client(timeout=60) as s3:
        assert s3.put(url, content=b"x" * 150).status_code == 403  # the signed Content-Length is 100
        assert s3.put(url, content=b"x" * 99).status_code == 403
        assert s3.put(url, content=b"x" * 100).status_code == 200


def test_completing_with_a_size_other_than_declared_is_400_and_removes_the_object(web, user, token):
    with web.client() as http:
        upload = create(http, token, size=100).json()
        # Put straight through boto3, as through a store that does not check a signed length.
        session = UploadSession.objects.get(pk=upload["upload_id"])
        put = client().upload_part(Bucket=session.bucket, Key=session.key, UploadId=session.s3_upload_id,
                                   PartNumber=1, Body=b"x" * 99)
        parts = [{"part_number": 1, "etag": put["ETag"]}]
        response = http.post(f"{BASE}{upload['upload_id']}/complete", json={"parts": parts}, headers=token)
        again = http.post(f"{BASE}{upload['upload_id']}/complete", json={"parts": parts}, headers=token)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "size_mismatch" and error["details"] == {"declared": 100, "uploaded": 99}
    assert stored_keys(user) == [] and open_uploads(user) == []
    assert again.status_code == 409 and error_of(again)["code"] == "upload_finished"


def test_another_users_upload_id_is_404_everywhere_and_stays_open_for_its_owner(web, user, other_user, token):
    mallory = token_headers(other_user)
    with web.client() as http:
        upload = create(http, token, size=10).json()
        upload_id = upload["upload_id"]
        responses = [
            http.post(f"{BASE}{upload_id}/parts", json={"part_numbers": [1]}, headers=mallory),
            http.post(f"{BASE}{upload_id}/complete", json={"parts": [{"part_number": 1, "etag": "x"}]},
                      headers=mallory),
            http.delete(f"{BASE}{upload_id}", headers=mallory),
        ]
        for response in responses:
            assert response.status_code == 404 and error_of(response)["code"] == "not_found"
        parts = send_parts(http, token, upload, b"0123456789")
        assert http.post(f"{BASE}{upload_id}/complete", json={"parts": parts}, headers=token).status_code == 201


def test_an_aborted_upload_leaves_nothing_open_and_cannot_be_completed(web, user, token):
    with web.client() as http:
        upload = create(http, token, size=10).json()
        assert len(open_uploads(user)) == 1
        aborted = http.delete(f"{BASE}{upload['upload_id']}", headers=token)
        completed = http.post(f"{BASE}{upload['upload_id']}/complete",
                              json={"parts": [{"part_number": 1, "etag": "x"}]}, headers=token)
    assert aborted.status_code == 204
    assert open_uploads(user) == [] and stored_keys(user) == []
    assert UploadSession.objects.get(pk=upload["upload_id"]).status == UploadSession.Status.ABORTED
    assert completed.status_code == 409


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"filename": "a.bin", "size": 0}, 400, "invalid"),
    ({"filename": "a.bin", "size": -5}, 400, "invalid"),
    ({"filename": "a.bin", "size": "big"}, 400, "invalid"),
    ({"filename": "a.bin"}, 400, "invalid"),
    ({"size": 10}, 400, "invalid"),
    ({"filename": "a.bin", "size": TEST_UPLOAD_MAX_BYTES + 1}, 413, "too_large"),
    ({"filename": "a.bin", "size": 10**30}, 400, "invalid"),
])
def test_a_create_with_a_bad_size_or_no_name_is_refused(web, user, token, body, status, code):
    with web.client() as http:
        response = http.post(BASE, json=body, headers=token)
    assert response.status_code == status and error_of(response)["code"] == code
    assert open_uploads(user) == []


@pytest.mark.parametrize("numbers", [[0], [3], [-1], ["x"], [], [1.5], "1"])
def test_signing_part_numbers_outside_the_upload_is_400(web, token, numbers):
    with web.client() as http:
        upload = create(http, token, size=9 * MIB).json()
        response = http.post(f"{BASE}{upload['upload_id']}/parts", json={"part_numbers": numbers}, headers=token)
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_part_number"


@pytest.mark.parametrize("parts", [[], [{"part_number": 1}], [{"part_number": 1, "etag": "x"}] * 2,
                                   [{"part_number": 2, "etag": "x"}], [{"part_number": 1, "etag": "wrong"}]])
def test_completing_with_missing_duplicate_or_wrong_parts_is_400_and_the_upload_stays_open(web, user, token, parts):
    with web.client() as http:
        upload = create(http, token, size=10).json()
        response = http.post(f"{BASE}{upload['upload_id']}/complete", json={"parts": parts}, headers=token)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "invalid_parts"
    assert len(open_uploads(user)) == 1 and stored_keys(user) == []


def test_direct_uploads_need_credentials(web):
    with web.client() as http:
        response = http.post(BASE, json={"filename": "a", "size": 1})
    assert response.status_code == 401 and error_of(response)["code"] == "not_authenticated"


def test_an_unknown_or_malformed_upload_id_is_404(web, token):
    with web.client() as http:
        for path in (f"{BASE}00000000-0000-0000-0000-000000000000/parts", f"{BASE}not-a-uuid/parts"):
            response = http.post(path, json={"part_numbers": [1]}, headers=token)
            assert response.status_code == 404 and error_of(response)["code"] == "not_found"
