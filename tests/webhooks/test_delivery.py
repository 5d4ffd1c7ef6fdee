"""Deliveries end to end: a real worker runs the job and sends its events to a real receiver
on 127.0.0.1, which checks every request with the `standardwebhooks` reference library."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from tests.conftest import wait_for_state, wait_until
from webhooks.models import Delivery

from .conftest import WORKER_ENV

DELIVERIES = "/api/v1/webhooks/deliveries/"


def _submit(api, upload, user, **extra) -> str:
    key = upload(user, b"name,size\na,1\nb,2\n")
    response = api.post("/api/v1/jobs/", {"job_type": "CSV_ROW_COUNT", "input_object_key": key, **extra},
                        format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def _secret(api) -> str:
    return api.get("/api/v1/webhooks/secret/").json()["secret"]


def _finished(delivery_state: str, job_id: str) -> Delivery:
    return wait_until(lambda: Delivery.objects.filter(job_id=job_id, state=delivery_state).first(), 60,
                      f"a {delivery_state} delivery of job {job_id}")


def _deliveries(api, job_id: str) -> list[dict]:
    return api.get(DELIVERIES, {"job_id": job_id}).json()["results"]


def test_a_completed_job_is_delivered_to_its_callback_url_signed(allow_loopback, webhook_worker, receiver, api,
                                                                   upload, user):
    secret = _secret(api)
    job_id = _submit(api, upload, user, callback_url=receiver.url)

    wait_for_state(job_id, "COMPLETED")
    (request,) = receiver.wait_for(1)
    payload = Webhook(secret).verify(request.body, request.headers)

    assert request.path == "/hooks/jobs"
    assert payload["type"] == "job.completed"
    assert payload["data"] == {"id": job_id, "job_type": "CSV_ROW_COUNT", "state": "COMPLETED",
                               "previous_state": "PROCESSING", "attempt": 1,
                               "result_url": f"/api/v1/jobs/{job_id}/result-url", "error": None}
    assert request.headers["webhook-id"].startswith("msg_")
    _finished("SUCCEEDED", job_id)
    (delivery,) = _deliveries(api, job_id)
    assert [(a["number"], a["status_code"], a["address"]) for a in delivery["attempts"]] == [
        (1, 200, f"127.0.0.1:{receiver.server.server_address[1]}")]


def test_a_receiver_that_fails_twice_gets_the_delivery_on_the_third_attempt(allow_loopback, webhook_worker,
                                                                              receiver, api, upload, user):
    receiver.answers = [503, 503]
    secret = _secret(api)
    job_id = _submit(api, upload, user, callback_url=receiver.url)

    requests = receiver.wait_for(3)
    _finished("SUCCEEDED", job_id)

    assert [Webhook(secret).verify(r.body, r.headers)["type"] for r in requests] == ["job.completed"] * 3
    assert len({r.headers["webhook-id"] for r in requests}) == 1, "every attempt carries one webhook-id"
    (delivery,) = _deliveries(api, job_id)
    assert [(a["number"], a["status_code"], a["succeeded"]) for a in delivery["attempts"]] == [
        (1, 503, False), (2, 503, False), (3, 200, True)]
    assert delivery["attempts"][0]["response_snippet"] == "not now"


def test_a_receiver_that_never_answers_2xx_fails_after_the_attempt_limit_and_a_replay_delivers(
        allow_loopback, webhook_worker, receiver, api, upload, user):
    receiver.then = 500
    secret = _secret(api)
    job_id = _submit(api, upload, user, callback_url=receiver.url)

    failed = _finished("FAILED", job_id)
    assert len(receiver.requests) == int(WORKER_ENV["WEBHOOK_MAX_ATTEMPTS"])
    assert (failed.last_status_code, failed.last_error) == (500, "HTTP 500")

    receiver.then = 204
    assert api.post(f"{DELIVERIES}{failed.pk}/replay").status_code == 202
    _finished("SUCCEEDED", job_id)
    last = receiver.requests[-1]
    assert Webhook(secret).verify(last.body, last.headers)["data"]["id"] == job_id
    (delivery,) = _deliveries(api, job_id)
    assert [(a["round"], a["status_code"]) for a in delivery["attempts"]][-2:] == [(0, 500), (1, 204)]


def test_a_replay_from_the_admin_is_delivered_again(allow_loopback, webhook_worker, receiver, api, upload, user,
                                                    client, staff_user):
    secret = _secret(api)
    job_id = _submit(api, upload, user, callback_url=receiver.url)
    delivery = _finished("SUCCEEDED", job_id)
    client.force_login(staff_user)

    response = client.post("/admin/webhooks/delivery/", {"action": "replay_deliveries",
                                                         "_selected_action": [str(delivery.pk)]}, follow=True)

    assert response.status_code == 200
    assert "1 deliveries queued again" in response.content.decode()
    first, again = receiver.wait_for(2)
    assert Webhook(secret).verify(again.body, again.headers) == json.loads(first.body)
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    wait_until(lambda: Delivery.objects.filter(pk=delivery.pk, state="SUCCEEDED", replay_count=1).exists(), 30,
               "the replay delivered")
    page = client.get(f"/admin/webhooks/delivery/{delivery.pk}/change/").content.decode()
    assert page.count('class="field-address"') == 2, "both attempts are listed"


def test_a_destination_the_worker_refuses_is_failed_without_a_request(allow_loopback, celery_process, receiver,
                                                                      api, upload, user):
    # The web side allows 127.0.0.1, the worker does not: its own check at delivery refuses.
    celery_process("worker", extra_env={**WORKER_ENV, "WEBHOOK_ALLOW_PRIVATE_DESTINATIONS": ""})
    job_id = _submit(api, upload, user, callback_url=receiver.url)

    failed = _finished("FAILED", job_id)

    assert receiver.requests == []
    assert failed.last_error.startswith("destination_refused:")
    (delivery,) = _deliveries(api, job_id)
    assert len(delivery["attempts"]) == 1, "a refused destination is not retried"


def test_an_endpoint_for_every_state_gets_each_move_of_the_job(allow_loopback, webhook_worker, receiver, api,
                                                              upload, user):
    assert api.post("/api/v1/webhooks/endpoints/", {"url": receiver.url, "events": "all"},
                    format="json").status_code == 201
    secret = _secret(api)
    job_id = _submit(api, upload, user)

    wait_for_state(job_id, "COMPLETED")
    wait_until(lambda: Delivery.objects.filter(job_id=job_id, state="SUCCEEDED").count() == 4, 60,
               "four deliveries")
    types = sorted(Webhook(secret).verify(r.body, r.headers)["type"] for r in receiver.requests)

    assert types == ["job.completed", "job.created", "job.processing", "job.queued"]


def test_after_a_rotation_both_secrets_verify_during_the_grace_and_only_the_new_one_after(
        allow_loopback, webhook_worker, receiver, api, upload, user):
    old = _secret(api)
    new = api.post("/api/v1/webhooks/secret/rotate", {"grace_seconds": 3600}, format="json").json()["secret"]
    _submit(api, upload, user, callback_url=receiver.url)
    (during,) = receiver.wait_for(1)

    assert Webhook(old).verify(during.body, during.headers)
    assert Webhook(new).verify(during.body, during.headers)

    rotated = api.post("/api/v1/webhooks/secret/rotate", {"grace_seconds": 1}, format="json").json()
    newest = rotated["secret"]
    time.sleep(1.5)  # past the one-second grace the previous secret (`new`) had
    _submit(api, upload, user, callback_url=receiver.url)
    _, after = receiver.wait_for(2)

    assert Webhook(newest).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(after.body, after.headers)
