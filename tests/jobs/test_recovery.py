"""Nothing is lost: killed workers, an emptied Redis, and an object store that goes away.

These run real servers and real worker processes, and break them for real: SIGKILL to a
worker's process group, Redis stopped and started again with no data, the S3 server
stopped and started again.
"""

import hashlib
import json
import os

import pytest

import storage
from jobs.models import DeadLetter, Job, JobState
from jobs.services.actions import dead_letter_replay
from jobs.services.create import job_create
from tests import stack_plugin
from tests.conftest import wait_for_state, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
S = JobState


def slow_job(owner, upload, data: bytes, **params):
    key = upload(owner, data, "slow.bin")
    return job_create(owner=owner, job_type="TEST_SLOW", input_key=key, params=params).job


def result_document(job_id) -> dict:
    return json.loads(storage.read_bytes(storage.output_bucket(), storage.output_key(job_id, "result.json"), 10**6))


def test_a_worker_killed_mid_job_is_noticed_and_the_job_completes_once(user, upload, celery_process):
    data = os.urandom(40 * 64 * 1024)
    first = celery_process("worker", name="doomed")
    celery_process("beat")
    job = slow_job(user, upload, data, chunk_delay=0.1)

    wait_until(lambda: Job.objects.filter(pk=job.id, state=S.PROCESSING, progress_bytes__gt=0).exists(), 30,
               "the job to be running")
    first.kill()  # SIGKILL to the whole worker: no ack, no requeue, no goodbye
    celery_process("worker", name="rescuer")

    job = wait_for_state(job.id, S.COMPLETED, timeout=60)
    assert job.result["sha256"] == hashlib.sha256(data).hexdigest()
    assert job.result["bytes"] == len(data)
    assert result_document(job.id)["result"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert job.worker_deaths == 1
    assert job.attempts == 2
    recoveries = job.events.filter(from_state=S.PROCESSING, to_state=S.QUEUED, reason__startswith="lease expired")
    assert recoveries.count() == 1
    assert job.events.filter(to_state=S.COMPLETED).count() == 1


def test_a_job_that_keeps_killing_its_worker_goes_dead_as_a_poison_pill(user, upload, celery_process, settings):
    celery_process("worker")
    celery_process("beat")
    key = upload(user, b"boom", "pill.bin")
    job = job_create(owner=user, job_type="TEST_KILL_WORKER", input_key=key).job

    job = wait_for_state(job.id, S.DEAD, timeout=90)

    assert job.error_code == "poison_pill"
    letter = DeadLetter.objects.get(job=job)
    assert "poison pill" in letter.reason
    assert job.worker_deaths == settings.JOB_MAX_WORKER_DEATHS - 1  # the last death is the one that kills it


def test_jobs_queued_when_redis_restarts_empty_still_complete(user, upload, celery_process):
    redis_server = stack_plugin.STACK.redis
    if redis_server is None:
        pytest.skip("REDIS_URL names an external Redis; this test restarts its own")
    celery_process("worker", concurrency=1)
    celery_process("beat")
    jobs = [slow_job(user, upload, os.urandom(8 * 64 * 1024), chunk_delay=0.1) for _ in range(6)]
    wait_until(lambda: Job.objects.filter(state=S.PROCESSING).exists(), 30, "a job to start")
    assert Job.objects.filter(state=S.QUEUED).count() >= 3  # messages waiting in Redis

    redis_server.stop()
    redis_server.start(empty=True)  # same port, no data: every queued message is gone

    for job in jobs:
        done = wait_for_state(job.id, S.COMPLETED, timeout=120)
        assert done.events.filter(to_state=S.COMPLETED).count() == 1


def test_jobs_retry_while_s3_is_down_and_complete_when_it_returns(user, upload, celery_process):
    s3_server = stack_plugin.STACK.s3
    if s3_server is None:
        pytest.skip("S3_ENDPOINT_URL names an external server; this test restarts its own")
    keys = [upload(user, b"a,b\n" + b"1,2\n" * 10, f"in{i}.csv") for i in range(3)]
    jobs = [job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=k, max_attempts=50).job
            for k in keys]
    s3_server.stop()
    try:
        celery_process("worker")
        celery_process("beat")
        wait_until(lambda: all(Job.objects.get(pk=j.id).events.filter(to_state=S.RETRYING).exists() for j in jobs),
                   60, "every job to be RETRYING")
    finally:
        s3_server.start()

    for job in jobs:
        done = wait_for_state(job.id, S.COMPLETED, timeout=90)
        assert done.result["rows"] == 10
        assert done.attempts >= 2


def test_jobs_go_dead_when_s3_stays_down_and_replay_completes_them(user, upload, celery_process):
    s3_server = stack_plugin.STACK.s3
    if s3_server is None:
        pytest.skip("S3_ENDPOINT_URL names an external server; this test restarts its own")
    keys = [upload(user, b"x\n1\n2\n3\n", f"dead{i}.csv") for i in range(3)]
    jobs = [job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=k, max_attempts=3).job
            for k in keys]
    s3_server.stop()
    try:
        celery_process("worker")
        celery_process("beat")
        for job in jobs:
            dead = wait_for_state(job.id, S.DEAD, timeout=90)
            assert dead.attempts == 3
            letter = DeadLetter.objects.get(job=dead)
            assert "attempts exhausted" in letter.reason
            assert "StorageUnavailable" in letter.traceback
    finally:
        s3_server.start()

    for letter in DeadLetter.objects.filter(job__in=[j.id for j in jobs]):
        dead_letter_replay(dead_letter=letter, actor="test")
    for job in jobs:
        done = wait_for_state(job.id, S.COMPLETED, timeout=60)
        assert done.result["rows"] == 3
        assert DeadLetter.objects.get(job=done).replay_count == 1
