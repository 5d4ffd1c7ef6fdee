"""POST /api/v1/jobs/: validation, ownership of the input, idempotency, content types, throttling."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache

import storage
from jobs.models import Job, JobState

from .conftest import CSV, error_of

pytestmark = pytest.mark.django_db
URL = "/api/v1/jobs/"


def test_create_with_input_object_key_returns_201_and_the_created_job(api, user, upload):
    key = upload(user, CSV, "people.csv")
    response = api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": key}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    assert job.owner == user and job.input_key == key
    assert body["state"] == JobState.QUEUED  # created and queued in one transaction
    assert body["input"] == {"bucket": storage.input_bucket(), "key": key, "name": "people.csv", "size": len(CSV)}
    assert body["params"]["delimiter"] == ","  # defaults applied
    assert body["progress"] == {"bytes": 0, "total": len(CSV), "percent": 0.0}
    assert body["error"] is None
    assert [(e["from"], e["to"]) for e in body["events"]] == [("", "CREATED"), ("CREATED", "QUEUED")]


def test_create_answers_with_a_location_header_naming_the_job(api, user, upload):
    key = upload(user, CSV)
    created = api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": key}, format="json",
                       HTTP_IDEMPOTENCY_KEY="location-1")
    assert created.status_code == 201
    location = created["Location"]
    assert location == f"http://testserver/api/v1/jobs/{created.json()['id']}/"
    assert api.get(location).json()["id"] == created.json()["id"]
    repeat = api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": key}, format="json",
                      HTTP_IDEMPOTENCY_KEY="location-1")
    assert repeat.status_code == 200 and "Location" not in repeat  # nothing was created


def test_create_with_input_metadata_names_bucket_and_key(api, user, upload):
    key = upload(user, CSV)
    response = api.post(URL, {"job_type": "CSV_ROW_COUNT", "params": {"delimiter": ";"},
                              "input_metadata": {"bucket": storage.input_bucket(), "key": key}}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["params"]["delimiter"] == ";"


def test_create_with_both_or_neither_input_is_400(api, user, upload):
    key = upload(user, CSV)
    both = {"job_type": "CSV_ROW_COUNT", "input_object_key": key,
            "input_metadata": {"bucket": storage.input_bucket(), "key": key}}
    for body in (both, {"job_type": "CSV_ROW_COUNT"}):
        error = error_of(api.post(URL, body, format="json"))
        assert error["code"] == "invalid"
        assert "exactly one of input_object_key and input_metadata" in error["message"]
    assert not Job.objects.exists()


@pytest.mark.parametrize("body, field", [
    ({"input_object_key": "x"}, "job_type"),
    ({"job_type": {"a": 1}, "input_object_key": "x"}, "job_type"),
    ({"job_type": "CSV_ROW_COUNT", "input_object_key": ["x"]}, "input_object_key"),
    ({"job_type": "CSV_ROW_COUNT", "input_object_key": "x", "params": [1, 2]}, "params"),
    ({"job_type": "CSV_ROW_COUNT", "input_metadata": "x"}, "input_metadata"),
    ({"job_type": "CSV_ROW_COUNT", "input_object_key": "k" * 1025}, "input_object_key"),
    ({"job_type": "", "input_object_key": "x"}, "job_type"),
])
def test_create_with_a_missing_or_mistyped_field_is_400_naming_the_field(api, body, field):
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid" and field in error["details"]
    assert field in error["message"]


def test_create_with_a_json_array_body_is_400(api):
    response = api.post(URL, "[1, 2]", content_type="application/json")
    assert response.status_code == 400
    assert "Expected a dictionary" in error_of(response)["message"]


def test_create_with_an_unknown_job_type_is_400_listing_the_valid_ones(api, user, upload):
    response = api.post(URL, {"job_type": "NOPE", "input_object_key": upload(user, CSV)}, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "unknown_job_type" and "CSV_ROW_COUNT" in error["message"]


def test_create_with_params_the_processor_rejects_is_400_with_per_field_details(api, user, upload):
    response = api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": upload(user, CSV),
                              "params": {"delimiter": ";;", "colour": "red"}}, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_params"
    assert set(error["details"]) == {"delimiter", "colour"}


def test_create_for_a_missing_object_is_404(api, user):
    key = storage.upload_key(user.pk, "never-uploaded.csv")
    response = api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": key}, format="json")
    assert response.status_code == 404
    assert error_of(response)["code"] == "input_not_found"


def test_create_for_another_users_object_is_404_as_if_it_did_not_exist(other_api, user, upload):
    key = upload(user, CSV)
    response = other_api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": key}, format="json")
    assert response.status_code == 404
    assert error_of(response)["code"] == "input_not_found"
    assert not Job.objects.exists()


def test_create_with_a_path_traversal_key_is_404(api, user, upload):
    other_key = upload(user, CSV)
    sneaky = storage.owner_upload_prefix(user.pk) + "../" + other_key
    response = api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": sneaky}, format="json")
    assert response.status_code == 404


def test_create_in_another_bucket_is_400(api, user, upload):
    key = upload(user, CSV)
    response = api.post(URL, {"job_type": "CSV_ROW_COUNT",
                              "input_metadata": {"bucket": storage.output_bucket(), "key": key}}, format="json")
    assert response.status_code == 400
    assert "input bucket must be" in error_of(response)["message"]


def test_malformed_json_body_is_400_parse_error(api):
    response = api.post(URL, '{"job_type": "CSV_ROW_COUNT", ', content_type="application/json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "parse_error" and "JSON parse error" in error["message"]


@pytest.mark.parametrize("body", ['{"job_type": NaN}', "\xff\xfe", '{"a": ' * 10000 + "1" + "}" * 10000])
def test_json_the_api_cannot_take_is_400_parse_error(api, body):
    response = api.post(URL, body.encode("latin-1"), content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_nul_character_in_params_is_400_not_a_database_error(api, user, upload):
    body = json.dumps({"job_type": "CSV_ROW_COUNT", "input_object_key": upload(user, CSV),
                       "params": {"encoding": "utf-8\u0000"}})
    response = api.post(URL, body, content_type="application/json")
    assert response.status_code == 400
    assert "NUL" in error_of(response)["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_wrong_content_type_is_415(api, content_type):
    response = api.post(URL, "job_type=CSV_ROW_COUNT", content_type=content_type)
    assert response.status_code == 415
    error = error_of(response)
    assert error["code"] == "unsupported_media_type" and content_type in error["message"]


def test_body_over_the_limit_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"job_type": "CSV_ROW_COUNT", "input_object_key": "k" * 2000})
    response = api.post(URL, body, content_type="application/json")
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"


def test_same_idempotency_key_and_body_returns_the_same_job_with_200(api, user, upload):
    body = {"job_type": "CSV_ROW_COUNT", "input_object_key": upload(user, CSV)}
    first = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    second = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Job.objects.count() == 1


def test_same_idempotency_key_with_a_different_body_is_409(api, user, upload):
    key = upload(user, CSV)
    api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": key}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    response = api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": key, "params": {"delimiter": ";"}},
                        format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "idempotency_key_reused"
    assert error["details"]["job_id"] == str(Job.objects.get().id)


def test_idempotency_keys_are_per_user(api, other_api, user, other_user, upload):
    first = api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": upload(user, CSV)},
                     format="json", HTTP_IDEMPOTENCY_KEY="same")
    second = other_api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": upload(other_user, CSV)},
                            format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert (first.status_code, second.status_code) == (201, 201)


def test_an_overlong_idempotency_key_is_400(api, user, upload):
    response = api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": upload(user, CSV)},
                        format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_idempotency_key"


def test_job_creation_is_throttled_per_user_with_429_and_retry_after(api, other_api, user, other_user, upload,
                                                                     settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"job_create": "2/min", "upload": "2/min"}}
    cache.clear()
    try:
        body = {"job_type": "CSV_ROW_COUNT", "input_object_key": upload(user, CSV)}
        statuses = [api.post(URL, body, format="json").status_code for _ in range(3)]
        assert statuses == [201, 201, 429]
        response = api.post(URL, body, format="json")
        error = error_of(response)
        assert error["code"] == "throttled"
        assert 0 < int(response["Retry-After"]) <= 60
        assert error["details"]["retry_after"] == int(response["Retry-After"])
        # Listing is not throttled, and another user has their own allowance.
        assert api.get(URL).status_code == 200
        other = other_api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": upload(other_user, CSV)},
                               format="json")
        assert other.status_code == 201
    finally:
        cache.clear()


def test_anonymous_create_is_401_with_a_token_challenge(client):
    response = client.post(URL, {}, content_type="application/json")
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


def test_a_bad_token_is_401(client):
    response = client.get(URL, HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_session_authentication_works_too(client, user, upload):
    client.force_login(user)
    response = client.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": upload(user, CSV)},
                           content_type="application/json")
    assert response.status_code == 201
