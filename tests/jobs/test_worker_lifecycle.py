"""A worker's life and death as the jobs see it: real worker processes, a real sweeper
process, real signals, and the real PostgreSQL stopped and restarted.

- A pool process the job kills is noticed by its main process at once; the job goes DEAD
  as a poison pill after JOB_MAX_WORKER_DEATHS, long before any lease could run out.
- Recovery goes on without beat: `manage.py sweep --loop` re-queues a killed worker's job.
- A run message that meets the database away is retried, not acknowledged and lost.
- Warm shutdown (SIGTERM): a job that finishes within the grace completes; one that does
  not is handed back at once, and neither counts as a worker death.
- Database restarts during a long job are not worker deaths.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from django.db import connection

from devstack.servers import die_with_parent
from jobs.models import Job, JobState
from jobs.services.create import job_create
from tests import stack_plugin
from tests.conftest import ROOT, WORKER_SETTINGS, subprocess_env, wait_for_state, wait_until
from tests.support.deadlines import within

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
S = JobState
# Leases no test here may wait for: what recovers a job in these tests is something else.
LONG_LEASE = {"JOB_LEASE_SECONDS": "600"}


class Sweeper:
    """`manage.py sweep --loop`, the platform's own sweeper process."""

    def __init__(self, log_dir, extra_env: dict | None = None):
        self.log = log_dir / f"sweeper-{time.monotonic_ns()}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "sweep", "--loop"],
                                         env={**subprocess_env(), **WORKER_SETTINGS, **(extra_env or {})},
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=die_with_parent(signal.SIGKILL))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(within(10))


@pytest.fixture
def sweeper(tmp_path, transactional_db):
    started: list[Sweeper] = []

    def start(**env: str) -> Sweeper:
        started.append(Sweeper(tmp_path, env))
        return started[-1]

    yield start
    for process in started:
        process.stop()


def slow_job(owner, upload, *, chunks: int, delay: float, **create):
    key = upload(owner, b"x" * (chunks * 1024), "slow.bin")
    return job_create(owner=owner, job_type="TEST_SLOW", input_key=key,
                      params={"chunk_size": 1024, "chunk_delay": delay}, **create).job


def running_on(job_id, worker) -> bool:
    return Job.objects.filter(pk=job_id, state=S.PROCESSING, progress_bytes__gt=0,
                              worker__startswith=f"{worker.node}@").exists()


def test_a_job_that_kills_its_pool_process_three_times_goes_dead_without_waiting_for_leases(
        user, upload, celery_process, sweeper, settings):
    celery_process("worker", extra_env=LONG_LEASE)
    sweeper()
    key = upload(user, b"boom", "pill.bin")
    job = job_create(owner=user, job_type="TEST_KILL_WORKER", input_key=key).job

    # Three leases of 600 s would take half an hour; the main process ends each at once.
    job = wait_for_state(job.id, S.DEAD, timeout=30)

    assert job.error_code == "poison_pill"
    assert job.worker_deaths == settings.JOB_MAX_WORKER_DEATHS - 1  # the last death is the one that kills it
    assert job.events.filter(to_state=S.PROCESSING).count() == settings.JOB_MAX_WORKER_DEATHS


def test_a_killed_workers_job_is_recovered_by_the_sweeper_process_without_beat(
        user, upload, celery_process, sweeper):
    doomed = celery_process("worker", name="doomed")
    sweeper()
    job = slow_job(user, upload, chunks=60, delay=0.1)
    wait_until(lambda: running_on(job.id, doomed), 30, "the job to be running")

    doomed.kill()  # SIGKILL to the whole worker: only its lease running out tells
    celery_process("worker", name="rescuer")

    job = wait_for_state(job.id, S.COMPLETED, timeout=60)
    assert job.worker_deaths == 1
    assert job.events.filter(from_state=S.PROCESSING, to_state=S.QUEUED, actor="sweeper").count() == 1


def test_a_message_that_meets_the_database_away_is_retried_not_dropped(user, upload, celery_process):
    postgres = stack_plugin.STACK.postgres
    if postgres is None:
        pytest.skip("DATABASE_URL names an external PostgreSQL; this test stops its own")
    key = upload(user, b"a,b\n1,2\n", "in.csv")
    job = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key).job  # its message waits in Redis
    connection.close()
    postgres.stop()
    try:
        # No beat, no sweeper: only the message itself can bring the job back.
        worker = celery_process("worker")
        wait_until(lambda: b"job.database_unavailable" in worker.log.read_bytes(), 30,
                   "the worker to meet the database away")
    finally:
        postgres.start()
        connection.close()

    done = wait_for_state(job.id, S.COMPLETED, timeout=60)
    assert done.result["rows"] == 1
    assert done.attempts == 1


def test_warm_shutdown_lets_a_running_job_finish(user, upload, celery_process):
    worker = celery_process("worker", name="leaving", extra_env={"JOB_SHUTDOWN_GRACE_SECONDS": "60"})
    job = slow_job(user, upload, chunks=20, delay=0.1)
    wait_until(lambda: running_on(job.id, worker), 30, "the job to be running")

    worker.proc.send_signal(signal.SIGTERM)  # the main process only, as Kubernetes does
    worker.proc.wait(within(30))

    done = Job.objects.get(pk=job.id)
    assert done.state == S.COMPLETED
    assert done.worker.startswith(f"{worker.node}@")
    assert (done.attempts, done.worker_deaths) == (1, 0)


def test_sigterm_to_the_workers_process_group_lets_a_running_job_finish(user, upload, celery_process):
    worker = celery_process("worker", name="leaving", extra_env={"JOB_SHUTDOWN_GRACE_SECONDS": "60"})
    job = slow_job(user, upload, chunks=20, delay=0.1)
    wait_until(lambda: running_on(job.id, worker), 30, "the job to be running")

    worker.kill(signal.SIGTERM)  # the pool processes get it too, as under `make run` or a terminal

    done = Job.objects.get(pk=job.id)
    assert done.state == S.COMPLETED
    assert (done.attempts, done.worker_deaths) == (1, 0)


def test_warm_shutdown_hands_a_long_job_back_at_once_after_the_grace(user, upload, celery_process):
    env = {**LONG_LEASE, "JOB_SHUTDOWN_GRACE_SECONDS": "1"}
    worker = celery_process("worker", name="leaving", extra_env=env)
    job = slow_job(user, upload, chunks=150, delay=0.1)  # 15 s: far longer than the grace
    wait_until(lambda: running_on(job.id, worker), 30, "the job to be running")

    worker.kill(signal.SIGTERM)

    # No sweeper and a 600 s lease: the job is queued again by the worker itself.
    handed = Job.objects.get(pk=job.id)
    assert handed.state == S.QUEUED
    assert handed.worker_deaths == 0
    assert handed.events.filter(from_state=S.PROCESSING, to_state=S.QUEUED,
                                reason__contains="worker shutting down").count() == 1
    celery_process("worker", name="next")
    done = wait_for_state(job.id, S.COMPLETED, timeout=60)
    assert (done.attempts, done.worker_deaths) == (2, 0)


def test_three_database_restarts_during_a_long_job_do_not_make_it_dead(user, upload, celery_process, sweeper):
    postgres = stack_plugin.STACK.postgres
    if postgres is None:
        pytest.skip("DATABASE_URL names an external PostgreSQL; this test restarts its own")
    celery_process("worker")
    sweeper()
    job = slow_job(user, upload, chunks=300, delay=0.1)  # about 30 s of work per attempt

    for restart in range(3):
        wait_until(lambda: Job.objects.filter(pk=job.id, state=S.PROCESSING, progress_bytes__gt=0).exists(),
                   60, f"the job to be running before restart {restart + 1}")
        connection.close()
        postgres.stop()
        postgres.start()
        connection.close()

    done = wait_for_state(job.id, S.COMPLETED, timeout=180)
    assert done.worker_deaths == 0
    assert not done.events.filter(to_state=S.DEAD).exists()
