"""A running job heartbeats: its lease moves on while it works, and a lost lease stops it."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from jobs import runner
from jobs.models import Job, JobState
from jobs.services.create import job_create
from tests.conftest import wait_for_state, wait_until
from tests.support.deadlines import within

pytestmark = pytest.mark.django_db(transaction=True)


def _run_in_thread(job_id, outcome: list) -> threading.Thread:
    def run():
        try:
            outcome.append(runner.job_run(job_id=job_id, worker="beat-test"))
        finally:
            connection.close()

    # A daemon: a job that fails to stop must not hold the test session open.
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_long_job_keeps_its_lease_alive_past_its_first_expiry_and_completes(user, upload, settings):
    settings.JOB_HEARTBEAT_SECONDS, settings.JOB_LEASE_SECONDS = 0.2, 1
    key = upload(user, b"x" * 16, "slow.bin")
    job = job_create(owner=user, job_type="TEST_SLOW", input_key=key,
                     params={"chunk_size": 1, "chunk_delay": 0.15}).job  # at least 2.4 s: over twice the lease
    outcome: list = []
    thread = _run_in_thread(job.id, outcome)
    first_expiry = wait_for_state(job.id, JobState.PROCESSING, timeout=10).lease_expires_at

    def still_working_on_a_renewed_lease() -> bool:
        row = Job.objects.get(pk=job.pk)
        now = timezone.now()
        return row.state == JobState.PROCESSING and now > first_expiry and row.lease_expires_at > now

    wait_until(still_working_on_a_renewed_lease, timeout=10, what="a lease renewed past its first expiry")
    done = wait_for_state(job.id, JobState.COMPLETED, timeout=20)
    thread.join(within(10))

    assert outcome == ["COMPLETED"]
    assert (done.lease_expires_at, done.claim_token) == (None, None)
    assert done.events.filter(to_state=JobState.COMPLETED).count() == 1


def test_a_job_whose_lease_was_taken_stops_at_its_next_chunk(user, upload, settings):
    settings.JOB_HEARTBEAT_SECONDS, settings.JOB_LEASE_SECONDS = 0.2, 30
    key = upload(user, b"x" * 10_000, "slow.bin")
    job = job_create(owner=user, job_type="TEST_SLOW", input_key=key,
                     params={"chunk_size": 1, "chunk_delay": 0.1}).job  # ~1,000 s if left alone
    outcome: list = []
    thread = _run_in_thread(job.id, outcome)
    wait_for_state(job.id, JobState.PROCESSING, timeout=10)
    # The sweeper gave the job back and another worker claimed it (a new claim token).
    Job.objects.filter(pk=job.pk).update(claim_token=None, worker="someone-else")

    # Far sooner than reading the whole input could take: it stopped at a next chunk.
    wait_until(lambda: not thread.is_alive(), timeout=10, what="the runner stopping")

    assert outcome == ["lost"]
    row = Job.objects.get(pk=job.pk)
    assert (row.state, row.worker) == (JobState.PROCESSING, "someone-else")  # the first worker wrote nothing more
    assert not row.events.filter(to_state=JobState.COMPLETED).exists()


def test_heartbeats_go_on_after_the_database_dropped_the_beaters_connection(user, upload, settings):
    settings.JOB_HEARTBEAT_SECONDS, settings.JOB_LEASE_SECONDS = 0.2, 1
    key = upload(user, b"x" * 80, "slow.bin")
    job = job_create(owner=user, job_type="TEST_SLOW", input_key=key,
                     params={"chunk_size": 1, "chunk_delay": 0.1}).job  # about 8 s: several leases
    outcome: list = []
    thread = _run_in_thread(job.id, outcome)
    wait_until(lambda: Job.objects.filter(pk=job.pk, state=JobState.PROCESSING,
                                          heartbeat_at__gt=F("started_at")).exists(), 10, "a first heartbeat")
    # What a database restart does to the beater: its connection is closed by the server.
    # Only the beater's last statement renews a lease; the runner's last one writes progress.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                       "AND query LIKE 'UPDATE%%' AND query LIKE '%%lease_expires_at%%'")
        assert cursor.fetchall(), "the beater's connection was not found"
    dropped_at = timezone.now()

    def lease_renewed_since_the_drop() -> bool:
        row = Job.objects.get(pk=job.pk)
        return row.state == JobState.PROCESSING and row.heartbeat_at > dropped_at

    wait_until(lease_renewed_since_the_drop, timeout=5, what="a heartbeat after the dropped connection")
    done = wait_for_state(job.id, JobState.COMPLETED, timeout=20)
    thread.join(within(10))
    assert outcome == ["COMPLETED"]
    assert done.events.filter(to_state=JobState.COMPLETED).count() == 1
