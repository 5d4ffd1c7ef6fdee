"""200 jobs while workers are SIGKILLed at random: every job completes, each exactly once."""

import hashlib
import os
import random
import time

import pytest

import storage
from jobs.models import Job, JobState
from jobs.services.create import job_create
from tests.support.deadlines import within

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
S = JobState
JOBS = 200
KILL_EVERY = (1.0, 3.0)  # seconds between kills, drawn at random
# Each kill costs a worker start-up (imports and all): on a 10x slower CI machine, 40 kills
# took most of 10 minutes of CPU. 15 kills land mid-job all the same.
MAX_KILLS = 15
DEADLINE = within(300)
# Random kills are not poison pills: a job may be unlucky more than three times here, and
# the poison-pill rule has its own test. The workers run the sweeper, so they get this.
NO_POISON = {"JOB_MAX_WORKER_DEATHS": "1000"}


def test_no_job_is_lost_across_200_jobs_with_random_worker_kills(user, upload, celery_process):
    rng = random.Random(20261122)
    inputs = {}
    for i in range(JOBS):
        data = os.urandom(rng.randint(1, 6) * 16 * 1024)
        key = upload(user, data, f"chaos-{i}.bin")
        job = job_create(owner=user, job_type="TEST_SLOW", input_key=key, max_attempts=1000,
                                  params={"chunk_delay": 0.1, "chunk_size": 16 * 1024}).job
        inputs[job.id] = hashlib.sha256(data).hexdigest()
    # The workers start once every job is queued: on a slow machine creating 200 jobs takes
    # a minute, and workers running meanwhile had finished them all before the first kill.
    celery_process("beat")
    workers = [celery_process("worker", name=f"chaos{i}", concurrency=2, extra_env=NO_POISON) for i in range(2)]

    kills = 0
    started = time.monotonic()
    next_kill = started + rng.uniform(*KILL_EVERY)
    while Job.objects.filter(pk__in=inputs).exclude(state=S.COMPLETED).exists():
        lost = list(Job.objects.filter(pk__in=inputs, state__in=[S.FAILED, S.DEAD, S.CANCELLED])
                    .values_list("id", "state", "error_message"))
        assert not lost, f"jobs ended other than COMPLETED: {lost}"
        assert time.monotonic() - started < DEADLINE, (
            f"not all jobs completed in {DEADLINE}s: "
            f"{list(Job.objects.filter(pk__in=inputs).exclude(state=S.COMPLETED).values_list('state', flat=True))}")
        # A kill lands on a worker in the middle of a job; its replacement starts in the
        # background, so on a slow machine the kills don't wait for start-ups, and the
        # others go on working.
        busy = [i for i, w in enumerate(workers) if w.is_ready() and Job.objects.filter(
            pk__in=inputs, state=S.PROCESSING, worker__startswith=f"{w.node}@").exists()]
        if time.monotonic() >= next_kill and kills < MAX_KILLS and busy:
            victim = rng.choice(busy)
            workers[victim].kill()
            kills += 1
            workers[victim] = celery_process("worker", name=f"chaos{victim}-{kills}", concurrency=2,
                                             extra_env=NO_POISON, wait=False)
            next_kill = time.monotonic() + rng.uniform(*KILL_EVERY)
        time.sleep(0.2)

    jobs = list(Job.objects.filter(pk__in=inputs))
    assert len(jobs) == JOBS
    assert kills > 0
    for job in jobs:
        assert job.state == S.COMPLETED
        assert job.result["sha256"] == inputs[job.id]
        assert job.events.filter(to_state=S.COMPLETED).count() == 1
    keys = set(storage.list_keys(storage.output_bucket(), storage.prefixed("")))
    assert all(storage.output_key(job.id, "result.json") in keys for job in jobs)
    print(f"\nchaos: {JOBS} jobs, {kills} worker kills, "
          f"{sum(j.worker_deaths for j in jobs)} jobs recovered from a dead worker, "
          f"all completed in {time.monotonic() - started:.1f}s")
