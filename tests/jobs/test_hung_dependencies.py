"""A dependency that hangs (paused with SIGSTOP: it keeps its sockets but answers nothing)
during a run of jobs: /readyz names it within its deadline, and once it is back every job
completes, exactly once."""

from __future__ import annotations

import os

import pytest
from django.db import connections

from jobs.models import Job, JobState
from jobs.services.create import job_create
from tests.conftest import wait_for_state, wait_until
from tests.jobs.test_health import PARTS, readyz_answer
from tests.support.pause import paused

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
