"""Jobs in each state for the page tests, made through the services and run in-process."""

from __future__ import annotations

import pytest

from jobs import runner, services
from jobs.models import Job

CSV = b"name,age\nann,31\nbob,42\n"


@pytest.fixture
def make_job(upload):
    """A job of `owner` moved to `state` the way production moves it (no direct row writes).

    The test database is not transactional here, so on-commit publishing does not run;
    the job is enqueued and then run in this process by the real runner.
    """

    def make(owner, state: str = "QUEUED", *, data: bytes = CSV, name: str = "people.csv",
             job_type: str = "CSV_ROW_COUNT", params: dict | None = None) -> Job:
        key = upload(owner, data, name)
        job = services.job_create(owner=owner, job_type=job_type, input_key=key, params=params).job
        if state == "CREATED":
            return job
        services.job_enqueue(job_id=job.id, reason="created", actor="test")
        if state in ("COMPLETED", "FAILED"):
            runner.job_run(job_id=job.id, worker="test-inprocess")
        elif state == "DEAD":
            claimed = services.job_claim(job_id=job.id, worker="test-inprocess")
            services.job_kill(job_id=job.id, expected=("PROCESSING",), claim_token=claimed.claim_token,
                              reason="attempts exhausted (test)", traceback="Traceback: boom", actor="test")
        elif state == "CANCELLED":
            services.job_cancel(job=job, actor="test")
        job.refresh_from_db()
        assert job.state == state, (job.state, job.error_message)
        return job

    return make


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client
