"""GET /api/v1/jobs/ and /api/v1/jobs/<id>/: only your own jobs, filters, pagination, events."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job, JobState

from .conftest import error_of

pytestmark = pytest.mark.django_db
URL = "/api/v1/jobs/"


def test_list_shows_only_your_own_jobs_newest_first(api, user, other_user, make_job):
    mine = [make_job(user), make_job(user)]
    make_job(other_user)
    body = api.get(URL).json()
    assert body["count"] == 2
    assert [j["id"] for j in body["results"]] == [str(mine[1].id), str(mine[0].id)]


def test_list_items_leave_the_result_out_and_the_job_keeps_it(api, user, make_job):
    job = make_job(user, JobState.COMPLETED)
    item = api.get(URL).json()["results"][0]
    assert "result" not in item and "events" not in item
    assert item["result_keys"] == job.result_keys and item["state"] == "COMPLETED"
    assert api.get(f"{URL}{job.id}/").json()["result"]["rows"] == 3


def test_list_filters_by_state_and_type(api, user, make_job):
    make_job(user)
    failed = make_job(user, JobState.FAILED)
    body = api.get(URL, {"state": "FAILED"}).json()
    assert [j["id"] for j in body["results"]] == [str(failed.id)]
    assert body["results"][0]["error"] == {"code": "bad_input", "message": "line 3: broken"}
    assert api.get(URL, {"job_type": "CSV_ROW_COUNT"}).json()["count"] == 2
    assert api.get(URL, {"job_type": "JSON_CANONICALIZE"}).json()["count"] == 0


def test_list_filters_by_creation_date(api, user, make_job):
    make_job(user)
    today = timezone.now().date()
    assert api.get(URL, {"created_after": today.isoformat()}).json()["count"] == 1
    assert api.get(URL, {"created_before": today.isoformat()}).json()["count"] == 0
    tomorrow = (timezone.now() + timedelta(days=1)).isoformat()
    assert api.get(URL, {"created_after": tomorrow}).json()["count"] == 0
    assert api.get(URL, {"created_before": tomorrow}).json()["count"] == 1


@pytest.mark.parametrize("query, field", [
    ({"state": "DONE"}, "state"),
    ({"created_after": "yesterday"}, "created_after"),
    ({"created_before": "2024-13-45"}, "created_before"),
    ({"job_type": "x" * 65}, "job_type"),
    ({"job_type": "CSV\x00"}, "job_type"),
])
def test_list_with_a_bad_filter_is_400_naming_it(api, query, field):
    response = api.get(URL, query)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_filter" and field in error["details"]


def test_list_is_paginated(api, user, make_job, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "PAGE_SIZE": 2}
    for _ in range(3):
        make_job(user)
    first = api.get(URL).json()
    assert first["count"] == 3 and len(first["results"]) == 2 and first["next"]
    second = api.get(URL, {"page": 2}).json()
    assert len(second["results"]) == 1 and second["next"] is None
    response = api.get(URL, {"page": 9})
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_detail_has_progress_events_attempts_and_timestamps(api, user, make_job):
    job = make_job(user, JobState.FAILED)
    body = api.get(f"{URL}{job.id}/").json()
    assert body["state"] == "FAILED" and body["attempts"] == 1 and body["max_attempts"] == job.max_attempts
    assert [(e["from"], e["to"]) for e in body["events"]] == [
        ("", "CREATED"), ("CREATED", "QUEUED"), ("QUEUED", "PROCESSING"), ("PROCESSING", "FAILED")]
    last = body["events"][-1]
    assert last["reason"] == "line 3: broken" and last["attempt"] == 1 and last["actor"] == "test" and last["at"]
    assert body["finished_at"] and body["started_at"] and body["queued_at"] and body["created_at"]
    assert body["result"] is None and body["result_keys"] == []


def test_detail_of_another_users_job_is_404(other_api, user, make_job):
    job = make_job(user)
    response = other_api.get(f"{URL}{job.id}/")
    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "job not found", "details": {}}


def test_detail_of_an_unknown_or_malformed_id_is_404_json(api):
    assert error_of(api.get(f"{URL}{uuid.uuid4()}/"))["code"] == "not_found"
    response = api.get(f"{URL}not-a-uuid/")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_staff_see_only_their_own_jobs_in_the_api_too(staff_api, user, make_job):
    job = make_job(user)
    assert staff_api.get(URL).json()["count"] == 0
    assert staff_api.get(f"{URL}{job.id}/").status_code == 404


def test_anonymous_list_is_401(client):
    assert client.get(URL).status_code == 401


def test_list_and_detail_never_expose_other_users_rows_via_filters(api, other_user, make_job):
    make_job(other_user, JobState.FAILED)
    assert api.get(URL, {"state": "FAILED"}).json()["count"] == 0
    assert Job.objects.count() == 1


def test_a_processing_job_without_progress_for_the_stall_time_is_stalled(api, user, make_job, settings):
    settings.JOB_STALL_SECONDS = 30
    stalled, fresh = make_job(user, JobState.PROCESSING), make_job(user, JobState.PROCESSING)
    Job.objects.filter(pk=stalled.pk).update(updated_at=timezone.now() - timedelta(seconds=31))

    assert api.get(f"{URL}{stalled.id}/").json()["stalled"] is True
    assert api.get(f"{URL}{fresh.id}/").json()["stalled"] is False
    assert {j["id"]: j["stalled"] for j in api.get(URL).json()["results"]} == {
        str(stalled.id): True, str(fresh.id): False}


def test_stalled_is_in_the_job_schema(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    field = schema["components"]["schemas"]["Job"]["properties"]["stalled"]
    assert field["type"] == "boolean" and "JOB_STALL_SECONDS" in field["description"]
    assert "stalled" in schema["components"]["schemas"]["Job"]["required"]
