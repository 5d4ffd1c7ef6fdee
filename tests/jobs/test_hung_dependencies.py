"""A dependency that hangs (paused with SIGSTOP: it keeps its sockets but answers nothing)
or is stopped during a run of jobs: /readyz names it within its deadline, the API answers
503 and never 500, and once it is back every job completes, exactly once."""

from __future__ import annotations

import os

import pytest
from django.db import connections

from jobs.models import Job, JobState
from jobs.services.create import job_create
from tests.conftest import wait_for_state, wait_until
from tests.jobs.test_health import PARTS, readyz_answer
from tests.support.pause import paused, stopped

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
S = JobState


@pytest.mark.parametrize("server", ["s3", "redis", "postgres"])
def test_jobs_running_while_a_server_hangs_complete_once_it_is_back(client, user, upload, celery_process, server):
    celery_process("worker")
    celery_process("beat")
    jobs = [job_create(owner=user, job_type="TEST_SLOW", input_key=upload(user, os.urandom(16 * 64 * 1024), "s.bin"),
                       params={"chunk_delay": 0.1}).job for _ in range(3)]
    wait_until(lambda: Job.objects.filter(pk__in=[j.id for j in jobs], state=S.PROCESSING).exists(), 30,
               "a job to be running")

    with paused(server):
        status, body = readyz_answer(client)
        status_again, _ = readyz_answer(client)  # the jobs run into the hung server meanwhile

    assert (status, status_again) == (503, 503)
    assert body["failed"] == PARTS[server]
    assert {body["checks"][part]["status"] for part in PARTS[server]} == {"hung"}
    connections.close_all()  # this process's own connection may not have survived the pause
    wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30, what="readyz 200 after resume")
    for job in jobs:
        done = wait_for_state(job.id, S.COMPLETED, timeout=90)
        assert done.events.filter(to_state=S.COMPLETED).count() == 1


# The restart outlasts the test settings' short backoffs: the jobs get attempts to spare.
# What the API answers while the part is away: the database and S3 are needed to create a job
# (503); without Redis the job is committed and published once Redis is back (201).
CREATE_WHILE_AWAY = {"s3": 503, "postgres": 503, "redis": 201}


@pytest.mark.parametrize("server", ["s3", "redis", "postgres"])
def test_jobs_running_while_a_server_is_stopped_complete_once_it_is_back(client, user, upload, celery_process,
                                                                         server):
    celery_process("worker")
    celery_process("beat")
    jobs = [job_create(owner=user, job_type="TEST_SLOW", input_key=upload(user, os.urandom(16 * 64 * 1024), "s.bin"),
                       params={"chunk_delay": 0.1}, max_attempts=50).job for _ in range(3)]
    key = upload(user, b"a,b\n1,2\n", "late.csv")
    wait_until(lambda: Job.objects.filter(pk__in=[j.id for j in jobs], state=S.PROCESSING).exists(), 30,
               "a job to be running")
    client.force_login(user)

    with stopped(server):
        status, body = readyz_answer(client)
        created = client.post("/api/v1/jobs/", {"job_type": "CSV_ROW_COUNT", "input_object_key": key},
                              content_type="application/json")

    assert status == 503
    assert body["failed"] == PARTS[server]
    assert {body["checks"][part]["status"] for part in PARTS[server]} == {"down"}
    assert created.status_code == CREATE_WHILE_AWAY[server], created.content[:500]
    if created.status_code == 503:
        assert created.json()["error"]["code"] in ("service_unavailable", "storage_unavailable")
        assert created.headers["Retry-After"]
    else:
        jobs.append(Job.objects.get(pk=created.json()["id"]))
    connections.close_all()  # this process's own connection did not survive a database restart
    wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30, what="readyz 200 after restart")
    for job in jobs:
        done = wait_for_state(job.id, S.COMPLETED, timeout=90)
        assert done.events.filter(to_state=S.COMPLETED).count() == 1
