"""result-url, cancel and retry on /api/v1/jobs/<id>/."""

from __future__ import annotations

import httpx
import pytest

from jobs.models import Job, JobState

from .conftest import CSV, error_of

URL = "/api/v1/jobs/"


@pytest.mark.django_db
class TestResultUrl:
    def test_of_a_job_not_completed_is_409(self, api, user, make_job):
        job = make_job(user)
        response = api.get(f"{URL}{job.id}/result-url")
        assert response.status_code == 409
        error = error_of(response)
        assert error["code"] == "not_ready" and "CREATED" in error["message"]

    @pytest.mark.parametrize("expiry", ["0", "86401", "-5", "abc", "1.5", "9" * 40])
    def test_with_an_expiry_out_of_bounds_or_not_a_number_is_400(self, api, user, make_job, expiry):
        job = make_job(user)
        response = api.get(f"{URL}{job.id}/result-url", {"expiry_sec": expiry})
        assert response.status_code == 400
        error = error_of(response)
        assert error["code"] == "invalid_expiry" and "expiry_sec" in error["message"]

    def test_of_another_users_job_is_404(self, other_api, user, make_job):
        job = make_job(user)
        assert other_api.get(f"{URL}{job.id}/result-url").status_code == 404

    def test_for_the_input_works_in_any_state_and_downloads_the_bytes(self, api, user, make_job):
        job = make_job(user)
        response = api.get(f"{URL}{job.id}/result-url", {"which": "input", "expiry_sec": 60})
        assert response.status_code == 200
        assert httpx.get(response.json()["url"]).content == CSV

    def test_with_an_unknown_which_is_400(self, api, user, make_job):
        job = make_job(user)
        response = api.get(f"{URL}{job.id}/result-url", {"which": "everything"})
        assert response.status_code == 400 and "which" in error_of(response)["details"]


@pytest.mark.django_db(transaction=True)
def test_result_url_of_a_completed_job_downloads_its_result(worker, user, upload):
    from tests.conftest import wait_for_state

    from .conftest import token_client

    api = token_client(user)
    created = api.post(URL, {"job_type": "CSV_ROW_COUNT", "input_object_key": upload(user, CSV)}, format="json")
    job = wait_for_state(created.json()["id"], JobState.COMPLETED, timeout=30)
    response = api.get(f"{URL}{job.id}/result-url", {"expiry_sec": 120})
    assert response.status_code == 200
    body = response.json()
    assert body["expires_at"]
    downloaded = httpx.get(body["url"])
    assert downloaded.status_code == 200 and downloaded.json()["result"]["rows"] == 3
    assert api.get(f"{URL}{job.id}/result-url", {"output": "nope.bin"}).status_code == 404
    detail = api.get(f"{URL}{job.id}/").json()
    assert detail["result"]["rows"] == 3 and detail["progress"]["percent"] == 100.0


@pytest.mark.django_db
class TestCancel:
    def test_of_a_queued_job_cancels_it_at_once(self, api, user, make_job):
        job = make_job(user, JobState.QUEUED)
        response = api.post(f"{URL}{job.id}/cancel")
        assert response.status_code == 200
        assert response.json()["state"] == "CANCELLED"
        assert Job.objects.get(pk=job.pk).state == JobState.CANCELLED

    def test_of_a_running_job_requests_cancellation(self, api, user, make_job):
        job = make_job(user, JobState.PROCESSING)
        body = api.post(f"{URL}{job.id}/cancel").json()
        assert body["state"] == "PROCESSING" and body["cancel_requested"] is True

    def test_of_a_finished_job_is_409(self, api, user, make_job):
        job = make_job(user, JobState.FAILED)
        response = api.post(f"{URL}{job.id}/cancel")
        assert response.status_code == 409
        assert error_of(response) == {"code": "invalid_state", "message": "a FAILED job cannot be cancelled",
                                      "details": {}}

    def test_of_another_users_job_is_404_and_changes_nothing(self, other_api, user, make_job):
        job = make_job(user)
        assert other_api.post(f"{URL}{job.id}/cancel").status_code == 404
        assert Job.objects.get(pk=job.pk).state == JobState.CREATED

    def test_by_staff_works_on_any_users_job(self, staff_api, user, make_job):
        job = make_job(user)
        assert staff_api.post(f"{URL}{job.id}/cancel").json()["state"] == "CANCELLED"

    def test_with_get_is_405(self, api, user, make_job):
        job = make_job(user)
        response = api.get(f"{URL}{job.id}/cancel")
        assert response.status_code == 405
        assert error_of(response)["code"] == "method_not_allowed"
        assert "POST" in response["Allow"]


@pytest.mark.django_db
class TestRetry:
    @pytest.mark.parametrize("state", [JobState.FAILED, JobState.DEAD])
    def test_of_a_failed_or_dead_job_queues_it_with_attempts_reset(self, api, user, make_job, state):
        job = make_job(user, state)
        response = api.post(f"{URL}{job.id}/retry")
        assert response.status_code == 200
        body = response.json()
        assert body["state"] == "QUEUED" and body["attempts"] == 0 and body["error"] is None
        assert body["events"][-1]["reason"] == "retried by operator"

    @pytest.mark.parametrize("state", [JobState.CREATED, JobState.QUEUED, JobState.PROCESSING])
    def test_of_a_job_not_failed_or_dead_is_409(self, api, user, make_job, state):
        job = make_job(user, state)
        response = api.post(f"{URL}{job.id}/retry")
        assert response.status_code == 409
        assert state in error_of(response)["message"]
        assert Job.objects.get(pk=job.pk).state == state

    def test_twice_is_409_the_second_time(self, api, user, make_job):
        job = make_job(user, JobState.FAILED)
        assert api.post(f"{URL}{job.id}/retry").status_code == 200
        assert api.post(f"{URL}{job.id}/retry").status_code == 409

    def test_of_another_users_job_is_404(self, other_api, user, make_job):
        job = make_job(user, JobState.FAILED)
        assert other_api.post(f"{URL}{job.id}/retry").status_code == 404
        assert Job.objects.get(pk=job.pk).state == JobState.FAILED

    def test_by_staff_works_on_any_users_job(self, staff_api, user, make_job):
        job = make_job(user, JobState.DEAD)
        assert staff_api.post(f"{URL}{job.id}/retry").json()["state"] == "QUEUED"
