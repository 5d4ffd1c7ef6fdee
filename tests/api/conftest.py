"""API test helpers: token-authenticated clients and jobs in a given state, made through services."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs import services
from jobs.models import JobState

CSV = b"name,size\na,1\nb,2\nc,3\n"


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api(user) -> APIClient:
    return token_client(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return token_client(other_user)


@pytest.fixture
def staff_api(staff_user) -> APIClient:
    return token_client(staff_user)


@pytest.fixture
def make_job(upload):
    """A CSV_ROW_COUNT job of `owner`, moved to `state` by the same services a worker uses."""

    def make(owner, state: str = JobState.CREATED, data: bytes = CSV, **kwargs):
        job = services.job_create(owner=owner, job_type="CSV_ROW_COUNT", input_key=upload(owner, data),
                                  **kwargs).job
        if state == JobState.CREATED:
            return job
        services.job_enqueue(job_id=job.id, reason="test", actor="test")
        if state == JobState.QUEUED:
            return job_reload(job)
        claimed = services.job_claim(job_id=job.id, worker="test-worker")
        if state == JobState.PROCESSING:
            return claimed
        if state == JobState.FAILED:
            return services.job_fail(job=claimed, code="bad_input", message="line 3: broken", actor="test")
        if state == JobState.DEAD:
            return services.job_kill(job_id=job.id, expected=JobState.PROCESSING, claim_token=claimed.claim_token,
                                     reason="attempts exhausted", traceback="Traceback: boom", actor="test")
        raise ValueError(state)

    return make


def job_reload(job):
    job.refresh_from_db()
    return job


def error_of(response) -> dict:
    """The error body, after checking it has the API's one shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]
