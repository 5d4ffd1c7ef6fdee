"""Resumable uploads on Uppy Companion's S3 routes, under /api/v1/uploads/s3/multipart.

The API runs in-process (DRF views); object storage is the session's real SeaweedFS, and
parts travel to it over HTTP through the presigned URLs, as from a browser.
"""

from __future__ import annotations

import base64
import hashlib
import os

import httpx
import pytest
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

import storage
from jobs.services import create as services
from jobs.uploads.models import UploadSession
from storage.boto import client
from tests.jobs.uploads.conftest import MIB, error_of, open_uploads, stored_keys

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/api/v1/uploads/s3/multipart"


@pytest.fixture
def api(user, buckets) -> APIClient:
    token, _ = Token.objects.get_or_create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api


@pytest.fixture
def mallory(other_user) -> APIClient:
    token, _ = Token.objects.get_or_create(user=other_user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api


def start(api: APIClient, filename: str = "big.bin", **metadata) -> dict:
    response = api.post(BASE, {"filename": filename, "type": "application/x-test", "metadata": metadata},
                        format="json")
    assert response.status_code == 201, response.content
    return response.json()


def put_part(api: APIClient, upload: dict, number: int, data: bytes) -> dict:
    signed = api.get(f"{BASE}/{upload['uploadId']}/{number}", {"key": upload["key"]})
    assert signed.status_code == 200, signed.content
    assert signed.json()["expires"] > 0
    put = httpx.put(signed.json()["url"], content=data, timeout=60)
    assert put.status_code == 200, put.text
    return {"PartNumber": number, "ETag": put.headers["ETag"]}


def complete(api: APIClient, upload: dict, parts: list[dict]):
    return api.post(f"{BASE}/{upload['uploadId']}/complete?key={upload['key']}", {"parts": parts}, format="json")


def test_parts_sent_to_signed_urls_become_the_object_and_its_sha256_is_recorded(api, user):
    data = os.urandom(5 * MIB + 123)
    upload = start(api, "../report 1.bin", size=len(data))
    assert upload["key"].startswith(storage.owner_upload_prefix(user.pk)) and upload["key"].endswith("/report 1.bin")
    parts = [put_part(api, upload, 1, data[:5 * MIB]), put_part(api, upload, 2, data[5 * MIB:])]
    response = complete(api, upload, parts)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["key"] == body["object_key"] == upload["key"]
    assert body["size"] == len(data) and body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["location"].startswith("s3://")
    assert storage.read_bytes(storage.input_bucket(), upload["key"], len(data)) == data
    assert UploadSession.objects.get(s3_upload_id=upload["uploadId"]).sha256 == hashlib.sha256(data).hexdigest()
    assert open_uploads(user) == []
    job = services.job_create(owner=user, job_type="SHA256", input_key=body["key"]).job
    assert job.input_size == len(data)


def test_listing_parts_shows_what_is_stored_so_a_client_can_resume(api):
    upload = start(api)
    put_part(api, upload, 1, b"a" * 5 * MIB)
    put_part(api, upload, 3, b"c" * 10)
    listed = api.get(f"{BASE}/{upload['uploadId']}", {"key": upload["key"]})
    assert listed.status_code == 200
    assert [(p["PartNumber"], p["Size"]) for p in listed.json()] == [(1, 5 * MIB), (3, 10)]
    assert all(p["ETag"] for p in listed.json())


@override_settings(UPLOAD_LIST_PARTS_PAGE_SIZE=2)
def test_listing_follows_the_part_number_marker_past_one_page(api):
    # Small parts are accepted until complete, so five tiny ones make three pages of two.
    upload = start(api)
    session = UploadSession.objects.get(s3_upload_id=upload["uploadId"])
    for number in range(1, 6):
        client().upload_part(Bucket=session.bucket, Key=session.key, UploadId=session.s3_upload_id,
                             PartNumber=number, Body=b"%d" % number)
    listed = api.get(f"{BASE}/{upload['uploadId']}", {"key": upload["key"]})
    assert [p["PartNumber"] for p in listed.json()] == [1, 2, 3, 4, 5]


def test_a_batch_of_part_urls_is_signed_at_once(api):
    upload = start(api)
    response = api.get(f"{BASE}/{upload['uploadId']}/batch", {"key": upload["key"], "partNumbers": "1,2,3"})
    assert response.status_code == 200
    urls = response.json()["presignedUrls"]
    assert sorted(urls) == ["1", "2", "3"] and all(u.startswith("http") for u in urls.values())
    assert httpx.put(urls["2"], content=b"two", timeout=30).status_code == 200


def test_another_users_upload_is_404_on_every_route_and_stays_usable_for_its_owner(api, mallory, user):
    upload = start(api)
    upload_id, key = upload["uploadId"], upload["key"]
    responses = [
        mallory.get(f"{BASE}/{upload_id}", {"key": key}),
        mallory.get(f"{BASE}/{upload_id}/1", {"key": key}),
        mallory.get(f"{BASE}/{upload_id}/batch", {"key": key, "partNumbers": "1"}),
        mallory.post(f"{BASE}/{upload_id}/complete?key={key}", {"parts": [{"PartNumber": 1, "ETag": "x"}]},
                     format="json"),
        mallory.delete(f"{BASE}/{upload_id}?key={key}"),
    ]
    for response in responses:
        assert response.status_code == 404 and error_of(response)["code"] == "not_found", response.content
    assert len(open_uploads(user)) == 1
    parts = [put_part(api, upload, 1, b"0123456789")]
    assert complete(api, upload, parts).status_code == 200


def test_an_upload_id_with_another_key_is_404(api):
    upload = start(api)
    other = start(api, "other.bin")
    response = api.get(f"{BASE}/{upload['uploadId']}", {"key": other["key"]})
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    missing = api.get(f"{BASE}/{upload['uploadId']}")
    assert missing.status_code == 400 and error_of(missing)["code"] == "invalid_key"


@pytest.mark.parametrize("number", ["0", "10001", "-1", "x", "1.5"])
def test_signing_a_part_number_outside_1_to_10000_is_400(api, number):
    upload = start(api)
    response = api.get(f"{BASE}/{upload['uploadId']}/{number}", {"key": upload["key"]})
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_part_number"


@pytest.mark.parametrize("numbers", ["", "1,0", "1,x", ",".join(str(n) for n in range(1, 1002))])
def test_a_batch_with_a_bad_part_number_is_400(api, numbers):
    upload = start(api)
    response = api.get(f"{BASE}/{upload['uploadId']}/batch", {"key": upload["key"], "partNumbers": numbers})
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_part_number"


def test_completing_with_a_wrong_etag_is_400_and_the_upload_stays_open(api, user):
    upload = start(api)
    put_part(api, upload, 1, b"x" * 10)
    response = complete(api, upload, [{"PartNumber": 1, "ETag": '"0000"'}])
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_parts"
    assert len(open_uploads(user)) == 1 and stored_keys(user) == []


def test_a_small_part_before_the_last_is_400(api, user):
    upload = start(api)
    parts = [put_part(api, upload, 1, b"x" * 10), put_part(api, upload, 2, b"y" * 10)]
    response = complete(api, upload, parts)
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_parts"
    assert "at least" in error_of(response)["message"] and len(open_uploads(user)) == 1


def test_parts_that_do_not_add_up_to_the_declared_size_are_400(api, user):
    upload = start(api, size=11)
    response = complete(api, upload, [put_part(api, upload, 1, b"x" * 10)])
    assert response.status_code == 400
    assert error_of(response)["details"] == {"declared": 11, "uploaded": 10}
    assert stored_keys(user) == []


@override_settings(UPLOAD_MAX_BYTES=15)
def test_parts_over_the_upload_limit_are_413_and_the_upload_is_aborted(api, user):
    upload = start(api)
    response = complete(api, upload, [put_part(api, upload, 1, b"x" * 16)])
    assert response.status_code == 413 and error_of(response)["code"] == "too_large"
    assert open_uploads(user) == [] and stored_keys(user) == []


@override_settings(UPLOAD_MAX_BYTES=15)
def test_a_declared_size_over_the_limit_is_413_before_anything_starts(api, user):
    response = api.post(BASE, {"filename": "a.bin", "metadata": {"size": "16"}}, format="json")
    assert response.status_code == 413 and open_uploads(user) == []


@pytest.mark.parametrize("body", [{}, {"filename": ""}, {"filename": "a", "metadata": "x"},
                                  {"filename": "a", "metadata": {"size": "big"}},
                                  {"filename": "a", "metadata": {"size": 0}}])
def test_a_create_without_a_name_or_with_a_bad_size_is_400(api, user, body):
    response = api.post(BASE, body, format="json")
    assert response.status_code == 400, response.content
    assert open_uploads(user) == []


@pytest.mark.parametrize("parts", [[], [{"PartNumber": 1}], [{"PartNumber": 0, "ETag": "x"}],
                                   [{"PartNumber": 1, "ETag": "x"}] * 2, "x"])
def test_a_malformed_part_list_is_400(api, parts):
    upload = start(api)
    response = complete(api, upload, parts)
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_parts"


def test_abort_leaves_nothing_open_and_later_calls_are_409(api, user):
    upload = start(api)
    aborted = api.delete(f"{BASE}/{upload['uploadId']}?key={upload['key']}")
    assert aborted.status_code == 204 and open_uploads(user) == []
    again = api.get(f"{BASE}/{upload['uploadId']}", {"key": upload["key"]})
    assert again.status_code == 409 and error_of(again)["code"] == "upload_finished"


def test_the_routes_need_credentials(buckets):
    response = APIClient().post(BASE, {"filename": "a"}, format="json")
    assert response.status_code == 401 and error_of(response)["code"] == "not_authenticated"


def test_a_session_needs_the_csrf_header_as_uppy_sends_it(user, buckets):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get("/upload/")  # sets the CSRF cookie, as the page does
    token = browser.cookies["csrftoken"].value
    refused = browser.post(BASE, {"filename": "a.bin"}, format="json")
    assert refused.status_code == 403
    accepted = browser.post(BASE, {"filename": "a.bin"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_a_part_signed_with_its_checksum_is_stored_only_when_the_body_matches(api, user):
    upload = start(api)
    data = b"the part's bytes"
    signed = api.get(f"{BASE}/{upload['uploadId']}/1", {"key": upload["key"], "checksumSHA256": b64_sha256(data)})
    assert signed.status_code == 200
    url, headers = signed.json()["url"], signed.json()["headers"]
    assert headers == {"x-amz-checksum-sha256": b64_sha256(data)}
    assert httpx.put(url, content=b"other bytes, same url", headers=headers, timeout=30).status_code == 400
    assert httpx.put(url, content=data, timeout=30).status_code in (400, 403)  # the signed header is missing
    listed = api.get(f"{BASE}/{upload['uploadId']}", {"key": upload["key"]})
    assert listed.json() == []
    stored = httpx.put(url, content=data, headers=headers, timeout=30)
    assert stored.status_code == 200
    listed = api.get(f"{BASE}/{upload['uploadId']}", {"key": upload["key"]}).json()
    assert [p["PartNumber"] for p in listed] == [1]
    response = complete(api, upload, [{"PartNumber": 1, "ETag": stored.headers["ETag"]}])
    assert response.status_code == 200 and response.json()["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("checksum", ["x", base64.b64encode(b"short").decode(), "!" * 44])
def test_a_checksum_that_is_not_a_base64_sha256_is_400(api, checksum):
    upload = start(api)
    response = api.get(f"{BASE}/{upload['uploadId']}/1", {"key": upload["key"], "checksumSHA256": checksum})
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_checksum"
