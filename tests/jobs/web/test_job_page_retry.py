"""The job page's error box and its Retry button: an error shows while it is the job's state,
and Retry is offered (and accepted, on the page and the API alike) only where it can help."""

from __future__ import annotations

import pytest

from jobs.models import Job, JobState
from jobs.services.execution import job_after_transient_error, job_claim, job_fail
from storage import StorageUnavailable

pytestmark = pytest.mark.django_db


def transient_failure(job: Job) -> Job:
    """The job's worker hit a storage outage with attempts left: RETRYING."""
    claimed = job_claim(job_id=job.id, worker="test-worker")
    retrying, _delay = job_after_transient_error(job=claimed, error=StorageUnavailable("s3 endpoint timed out"),
                                                 traceback="", actor="worker:test")
    return retrying


def failed_with(job: Job, code: str, message: str) -> Job:
    return job_fail(job=job_claim(job_id=job.id, worker="test-worker"), code=code, message=message,
                    actor="worker:test")


def test_a_retrying_job_shows_its_transient_error_as_a_warning_not_a_failure(signed_in, user, make_job):
    job = transient_failure(make_job(user, "QUEUED"))
    body = signed_in.get(f"/jobs/{job.id}/?fragment=1").content.decode()
    assert "hit a transient error" in body and "s3 endpoint timed out" in body
    assert "data-error-transient" in body and "msg-error" not in body


def test_the_error_box_is_gone_once_a_new_attempt_starts(signed_in, user, make_job, settings):
    settings.JOB_RETRY_BACKOFF_BASE = settings.JOB_RETRY_BACKOFF_MAX = 0.001
    job = transient_failure(make_job(user, "QUEUED"))
    claimed = job_claim(job_id=job.id, worker="test-worker")
    assert claimed is not None and claimed.state == JobState.PROCESSING
    assert claimed.error_message  # the row keeps the last error; the page must not show it as current
    body = signed_in.get(f"/jobs/{job.id}/?fragment=1").content.decode()
    assert "data-error" not in body
    assert "s3 endpoint timed out" in body  # still in the timeline, as history


@pytest.mark.parametrize(("code", "why"), [
    ("resource_limit", "went over its CPU, memory or time limit"),
    ("invalid_params", "parameters are refused"),
    ("malformed_csv", "the input cannot be processed as it is"),
])
def test_a_permanent_failure_gets_no_retry_button_and_the_api_refuses_it_with_409(signed_in, user, make_job,
                                                                                  code, why):
    job = failed_with(make_job(user, "QUEUED"), code, "the job's own words")
    page = signed_in.get(f"/jobs/{job.id}/").content.decode()
    assert f'action="/jobs/{job.id}/retry"' not in page and why in page

    response = signed_in.post(f"/api/v1/jobs/{job.id}/retry")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "not_retryable" and why in error["message"]
    assert error["details"] == {"error_code": code}
    assert Job.objects.get(pk=job.pk).state == JobState.FAILED


def test_a_failure_outside_the_input_gets_a_retry_on_the_page_and_in_the_api(signed_in, user, make_job):
    job = failed_with(make_job(user, "QUEUED"), "storage_access_denied", "object storage refused the write")
    page = signed_in.get(f"/jobs/{job.id}/").content.decode()
    assert f'action="/jobs/{job.id}/retry"' in page and "No Retry" not in page

    response = signed_in.post(f"/api/v1/jobs/{job.id}/retry")
    assert response.status_code == 200 and response.json()["state"] == JobState.QUEUED


def test_a_permanent_failure_may_be_retried_once_its_processor_changed(signed_in, user, make_job):
    job = failed_with(make_job(user, "QUEUED"), "malformed_csv", "line 2: unclosed quote")
    Job.objects.filter(pk=job.pk).update(processor_version="0-older")
    assert f'action="/jobs/{job.id}/retry"' in signed_in.get(f"/jobs/{job.id}/").content.decode()

    response = signed_in.post(f"/api/v1/jobs/{job.id}/retry")
    assert response.status_code == 200
    assert response.json()["processor_version"] != "0-older"


def test_a_dead_job_is_retried_by_the_api(signed_in, user, make_job):
    job = make_job(user, "DEAD")
    response = signed_in.post(f"/api/v1/jobs/{job.id}/retry")
    assert response.status_code == 200 and response.json()["state"] == JobState.QUEUED
