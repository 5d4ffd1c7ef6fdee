"""GET /api/v1/jobs/ and /api/v1/jobs/<id>/: only your own jobs, filters, cursor pagination, events."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job, JobState

from .conftest import error_of

pytestmark = pytest.mark.django_db
URL = "/api/v1/jobs/"


def listed(api, **query) -> list[dict]:
    response = api.get(URL, query)
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_list_shows_only_your_own_jobs_newest_first(api, user, other_user, make_job):
    mine = [make_job(user), make_job(user)]
    make_job(other_user)
    body = api.get(URL).json()
    assert set(body) == {"next", "previous", "results"}
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
    assert len(listed(api, job_type="CSV_ROW_COUNT")) == 2
    assert listed(api, job_type="JSON_CANONICALIZE") == []


def test_list_filters_by_creation_date(api, user, make_job):
    make_job(user)
    today = timezone.now().date()
    assert len(listed(api, created_after=today.isoformat())) == 1
    assert listed(api, created_before=today.isoformat()) == []
    tomorrow = (timezone.now() + timedelta(days=1)).isoformat()
    assert listed(api, created_after=tomorrow) == []
    assert len(listed(api, created_before=tomorrow)) == 1


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


def test_list_pages_follow_next_and_previous_cursors_newest_first(api, user, make_job, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "PAGE_SIZE": 2}
    jobs = [make_job(user) for _ in range(5)]
    newest_first = [str(job.id) for job in reversed(jobs)]
    first = api.get(URL).json()
    assert [j["id"] for j in first["results"]] == newest_first[:2] and first["previous"] is None
    second = api.get(first["next"]).json()
    assert [j["id"] for j in second["results"]] == newest_first[2:4]
    third = api.get(second["next"]).json()
    assert [j["id"] for j in third["results"]] == newest_first[4:] and third["next"] is None
    back = api.get(third["previous"]).json()
    assert [j["id"] for j in back["results"]] == newest_first[2:4]


def test_page_size_is_kept_across_pages_and_capped_at_100(api, user, make_job):
    for _ in range(3):
        make_job(user)
    first = api.get(URL, {"page_size": 1}).json()
    assert len(first["results"]) == 1 and "page_size=1" in first["next"]
    assert len(api.get(first["next"]).json()["results"]) == 1
    assert len(api.get(URL, {"page_size": 1000}).json()["results"]) == 3


def test_a_page_keeps_its_place_when_newer_jobs_arrive(api, user, make_job, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "PAGE_SIZE": 2}
    jobs = [make_job(user) for _ in range(4)]
    first = api.get(URL).json()
    make_job(user)  # a new job on top must not push an old one onto the next page twice
    second = api.get(first["next"]).json()
    assert [j["id"] for j in second["results"]] == [str(jobs[1].id), str(jobs[0].id)]


def test_filters_are_kept_in_the_cursor_links(api, user, make_job, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "PAGE_SIZE": 1}
    failed = [make_job(user, JobState.FAILED) for _ in range(2)]
    make_job(user)
    first = api.get(URL, {"state": "FAILED"}).json()
    second = api.get(first["next"]).json()
    assert [j["id"] for j in first["results"] + second["results"]] == [str(failed[1].id), str(failed[0].id)]
    assert second["next"] is None


@pytest.mark.parametrize("cursor", ["garbage", "cD0yMDI0", "%00"])
def test_a_cursor_this_server_did_not_make_is_400(api, cursor):
    response = api.get(URL, {"cursor": cursor})
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_cursor"


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
    assert staff_api.get(URL).json()["results"] == []
    assert staff_api.get(f"{URL}{job.id}/").status_code == 404


def test_anonymous_list_is_401(client):
    assert client.get(URL).status_code == 401


def test_list_and_detail_never_expose_other_users_rows_via_filters(api, other_user, make_job):
    make_job(other_user, JobState.FAILED)
    assert listed(api, state="FAILED") == []
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
