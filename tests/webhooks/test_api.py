"""The webhooks API: own endpoints, secret, deliveries; callback_url checked at job creation."""

from __future__ import annotations

import uuid

import pytest

from jobs.models import Job, JobState
from webhooks.models import Delivery
from webhooks.services import deliveries_create_for_event

from .conftest import error_of

ENDPOINTS = "/api/v1/webhooks/endpoints/"
DELIVERIES = "/api/v1/webhooks/deliveries/"
PUBLIC = "https://93.184.215.14/hooks"


def _create_job(api, upload, user, **extra):
    key = upload(user, b"a,b\n1,2\n")
    return api.post("/api/v1/jobs/", {"job_type": "CSV_ROW_COUNT", "input_object_key": key, **extra}, format="json")


def _delivery_of(job) -> Delivery:
    """A delivery of the job's terminal event to its callback_url, as the worker makes it."""
    (delivery,) = deliveries_create_for_event(job=job, event=job.events.order_by("-id").first())
    return delivery


@pytest.mark.parametrize(("url", "code"), [
    ("http://127.0.0.1:8000/hook", "destination_refused"),
    ("http://169.254.169.254/latest/meta-data", "destination_refused"),
    ("ftp://93.184.215.14/x", "invalid_destination"),
])
def test_a_job_whose_callback_url_is_not_public_is_refused_with_a_code(api, upload, user, url, code):
    response = _create_job(api, upload, user, callback_url=url)

    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert "callback_url" in error_of(response)["details"]


def test_a_callback_url_that_is_not_a_url_is_a_400(api, upload, user):
    response = _create_job(api, upload, user, callback_url="hook please")

    assert response.status_code == 400
    assert "callback_url" in error_of(response)["details"]


def test_a_job_keeps_a_public_callback_url(api, upload, user):
    response = _create_job(api, upload, user, callback_url=PUBLIC)

    assert response.status_code == 201
    assert Job.objects.get(pk=response.json()["id"]).callback_url == PUBLIC


def test_an_endpoint_on_a_private_address_is_refused(api):
    response = api.post(ENDPOINTS, {"url": "http://10.0.0.5/hook"}, format="json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "destination_refused"


def test_endpoints_are_created_listed_changed_and_deleted_by_their_owner(api):
    created = api.post(ENDPOINTS, {"url": PUBLIC, "events": "all"}, format="json")
    assert created.status_code == 201, created.json()
    endpoint = created.json()

    assert [e["id"] for e in api.get(ENDPOINTS).json()["results"]] == [endpoint["id"]]
    patched = api.patch(f"{ENDPOINTS}{endpoint['id']}/", {"enabled": False}, format="json")
    assert (patched.status_code, patched.json()["enabled"], patched.json()["events"]) == (200, False, "all")
    assert api.delete(f"{ENDPOINTS}{endpoint['id']}/").status_code == 204
    assert api.get(f"{ENDPOINTS}{endpoint['id']}/").status_code == 404


def test_another_users_endpoint_is_a_404_for_every_method(api, other_api):
    endpoint = api.post(ENDPOINTS, {"url": PUBLIC}, format="json").json()
    url = f"{ENDPOINTS}{endpoint['id']}/"

    assert other_api.get(url).status_code == 404
    assert other_api.patch(url, {"enabled": False}, format="json").status_code == 404
    assert other_api.delete(url).status_code == 404
    assert other_api.get(ENDPOINTS).json()["results"] == []
    assert api.get(url).json()["enabled"] is True


def test_a_user_sees_and_replays_only_their_own_deliveries(api, other_api, user, make_job):
    job = make_job(user, JobState.FAILED, callback_url=PUBLIC)
    delivery = _delivery_of(job)
    Delivery.objects.filter(pk=delivery.pk).update(state="FAILED")

    assert other_api.get(DELIVERIES).json()["results"] == []
    assert other_api.get(f"{DELIVERIES}{delivery.pk}/").status_code == 404
    assert error_of(other_api.post(f"{DELIVERIES}{delivery.pk}/replay"))["code"] == "not_found"
    mine = api.get(DELIVERIES).json()["results"]
    assert [(d["id"], d["event_type"], d["payload"]["data"]["state"]) for d in mine] == [
        (str(delivery.pk), "job.failed", "FAILED")]
    assert mine[0]["payload"]["data"]["error"] == {"code": "bad_input", "message": "line 3: broken"}
    replayed = api.post(f"{DELIVERIES}{delivery.pk}/replay")
    assert (replayed.status_code, replayed.json()["state"], replayed.json()["replay_count"]) == (202, "PENDING", 1)


def test_a_delivery_still_being_attempted_cannot_be_replayed(api, user, make_job):
    delivery = _delivery_of(make_job(user, JobState.CANCELLED, callback_url=PUBLIC))

    response = api.post(f"{DELIVERIES}{delivery.pk}/replay")

    assert response.status_code == 409
    assert error_of(response)["code"] == "delivery_pending"


def test_the_secret_is_standard_webhooks_shaped_and_rotates(api):
    first = api.get("/api/v1/webhooks/secret/").json()
    rotated = api.post("/api/v1/webhooks/secret/rotate", {"grace_seconds": 60}, format="json")

    assert first["secret"].startswith("whsec_") and first["previous_valid_until"] is None
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != first["secret"]
    assert rotated.json()["previous_valid_until"] is not None


def test_a_grace_period_out_of_range_is_a_400(api):
    response = api.post("/api/v1/webhooks/secret/rotate", {"grace_seconds": -1}, format="json")

    assert response.status_code == 400
    assert "grace_seconds" in error_of(response)["details"]


def test_an_unknown_path_or_delivery_id_answers_in_the_error_shape(api):
    assert error_of(api.get("/api/v1/webhooks/nope"))["code"] == "not_found"
    assert api.get(f"{DELIVERIES}{uuid.uuid4()}/").status_code == 404


def test_anonymous_requests_are_refused(client):
    assert client.get(DELIVERIES).status_code == 401


def test_webhook_writes_are_throttled_per_user(api, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "webhook": "2/min"}}

    statuses = [api.post("/api/v1/webhooks/secret/rotate", {}, format="json").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    assert api.get("/api/v1/webhooks/secret/").status_code == 200, "reads are not throttled"


def test_an_idempotent_repeat_with_another_callback_url_is_a_409(api, upload, user):
    key = upload(user, b"a,b\n1,2\n")
    body = {"job_type": "CSV_ROW_COUNT", "input_object_key": key, "callback_url": PUBLIC}

    first = api.post("/api/v1/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    same = api.post("/api/v1/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    other = api.post("/api/v1/jobs/", {**body, "callback_url": PUBLIC + "/other"}, format="json",
                     HTTP_IDEMPOTENCY_KEY="k1")

    assert (first.status_code, same.status_code, same.json()["id"]) == (201, 200, first.json()["id"])
    assert other.status_code == 409
    assert error_of(other)["code"] == "idempotency_key_reused"
