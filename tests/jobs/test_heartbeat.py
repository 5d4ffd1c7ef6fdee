"""A running job heartbeats: its lease moves on while it works, and a lost lease stops it."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from jobs import runner
from jobs.models import Job, JobState
from jobs.services.create import job_create
from tests.support.deadlines import within

pytestmark = pytest.mark.django_db(transaction=True)


def _run_in_thread(job_id, outcome: list) -> threading.Thread:
    def run():
        try:
            outcome.append(runner.job_run(job_id=job_id, worker="beat-test"))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_long_job_keeps_its_lease_alive_and_completes(user, upload, settings):
    settings.JOB_HEARTBEAT_SECONDS, settings.JOB_LEASE_SECONDS = 0.2, 1
    key = upload(user, b"x" * 16, "slow.bin")
    job = job_create(owner=user, job_type="TEST_SLOW", input_key=key,
                              params={"chunk_size": 1, "chunk_delay": 0.15}).job  # ~2.4 s, twice the lease
    outcome, beats = [], set()
    thread = _run_in_thread(job.id, outcome)
    while thread.is_alive():
        row = Job.objects.get(pk=job.pk)
        if row.state == JobState.PROCESSING:
            assert row.lease_expires_at > timezone.now(), "the lease ran out while the job was working"
            beats.add(row.heartbeat_at)
        time.sleep(0.1)
    thread.join()

    assert outcome == ["COMPLETED"]
    assert len(beats) >= 5  # the claim's heartbeat time, then one about every 0.2 s
    assert Job.objects.get(pk=job.pk).events.filter(to_state=JobState.COMPLETED).count() == 1


def test_a_job_whose_lease_was_taken_stops_at_its_next_chunk(user, upload, settings):
    settings.JOB_HEARTBEAT_SECONDS, settings.JOB_LEASE_SECONDS = 0.2, 30
    key = upload(user, b"x" * 40, "slow.bin")
    job = job_create(owner=user, job_type="TEST_SLOW", input_key=key,
                              params={"chunk_size": 1, "chunk_delay": 0.1}).job  # ~4 s if left alone
    outcome = []
    thread = _run_in_thread(job.id, outcome)
    deadline = time.monotonic() + within(10)
    while Job.objects.get(pk=job.pk).state != JobState.PROCESSING and time.monotonic() < deadline:
        time.sleep(0.02)
    # The sweeper gave the job back and another worker claimed it (a new claim token).
    Job.objects.filter(pk=job.pk).update(claim_token=None, worker="someone-else")
    thread.join(within(2))  # it stops at its next chunk, long before the ~4 s it would take

    assert not thread.is_alive() and outcome == ["lost"]
    row = Job.objects.get(pk=job.pk)
    assert (row.state, row.worker) == (JobState.PROCESSING, "someone-else")  # the first worker wrote nothing more
    assert not row.events.filter(to_state=JobState.COMPLETED).exists()
