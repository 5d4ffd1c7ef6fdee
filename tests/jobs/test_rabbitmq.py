"""RabbitMQ as the broker: quorum queues, /readyz, a worker SIGKILLed mid-job, retries while
S3 is down, 200 jobs with random kills.

The scenarios of test_recovery.py and test_chaos.py, with every process that talks to
the broker (Uvicorn, workers, beat) given CELERY_BROKER_URL=amqp://... on a vhost of the
session's own (tests/support/rabbitmq.py). Jobs are created through the web process's API,
so their run messages go through RabbitMQ too; the test process only reads the database.
Skipped with a message when there is no RabbitMQ.
"""

import hashlib
import os
import random
import time

import httpx
import pytest
from kombu import Connection, Queue
from rest_framework.authtoken.models import Token

import storage
from devstack.servers import free_port
from jobs.models import Job, JobState
from tests import stack_plugin
from tests.conftest import wait_for_state, wait_until
from tests.support.deadlines import within
from tests.support.rabbitmq import rabbitmq_url  # noqa: F401  (the session's vhost fixture)

pytestmark = [pytest.mark.django_db(transaction=True)]
S = JobState
# Random kills are not poison pills (the poison-pill rule has its own test), and a job may
# be unlucky more than JOB_MAX_ATTEMPTS times among 200.
NO_POISON = {"JOB_MAX_WORKER_DEATHS": "1000", "JOB_MAX_ATTEMPTS": "1000"}


@pytest.fixture
def amqp(rabbitmq_url):  # noqa: F811
    return {"CELERY_BROKER_URL": rabbitmq_url}


@pytest.fixture
def create_jobs(user, start_web_server, amqp):
    """Creates TEST_SLOW jobs through the API of a web process publishing to RabbitMQ."""
    servers: dict[str, object] = {}
    headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}

    def create(keys: list[str], **params) -> list[str]:
        if "web" not in servers:
            servers["web"] = start_web_server(**amqp, **NO_POISON)
        with servers["web"].client(headers=headers) as client:
            ids = []
            for key in keys:
                response = client.post("/api/v1/jobs/", json={"job_type": "TEST_SLOW", "input_object_key": key,
                                                              "params": params})
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            return ids

    return create


def test_readyz_checks_rabbitmq_when_it_is_the_broker(start_web_server, amqp):
    up = start_web_server(**amqp)
    down = start_web_server(CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}/")

    ready = httpx.get(f"{up.url}/readyz", timeout=30)
    unready = httpx.get(f"{down.url}/readyz", timeout=30)

    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["broker"]["ok"] is True
    assert unready.status_code == 503
    assert unready.json()["failed"] == ["broker"]
    assert unready.json()["checks"]["broker"]["status"] == "down"


def test_the_job_queues_are_quorum_queues(celery_process, amqp):
    celery_process("worker", extra_env=amqp)

    with Connection(amqp["CELERY_BROKER_URL"]) as connection:
        for name in ("jobs", "maintenance"):
            # The broker refuses to redeclare a queue as another type: it is a quorum queue.
            with connection.channel() as channel, pytest.raises(connection.channel_errors, match="x-queue-type"):
                Queue(name, durable=True, channel=channel).declare()
            with connection.channel() as channel:
                Queue(name, durable=True, channel=channel, queue_arguments={"x-queue-type": "quorum"}).declare()


@pytest.mark.slow
def test_a_worker_killed_mid_job_on_rabbitmq_is_noticed_and_the_job_completes_once(
        user, upload, celery_process, create_jobs, amqp):
    data = os.urandom(40 * 64 * 1024)
    first = celery_process("worker", name="doomed", extra_env=amqp)
    celery_process("beat", extra_env=amqp)
    [job_id] = create_jobs([upload(user, data, "slow.bin")], chunk_delay=0.1)

    wait_until(lambda: Job.objects.filter(pk=job_id, state=S.PROCESSING, progress_bytes__gt=0).exists(), 30,
               "the job to be running")
    first.kill()  # SIGKILL to the whole worker: RabbitMQ sees the connection drop, the message is redelivered
    celery_process("worker", name="rescuer", extra_env=amqp)

    job = wait_for_state(job_id, S.COMPLETED, timeout=60)
    assert job.result["sha256"] == hashlib.sha256(data).hexdigest()
    assert job.worker_deaths == 1
    assert job.attempts == 2
    assert job.worker.startswith("rescuer-")
    recoveries = job.events.filter(from_state=S.PROCESSING, to_state=S.QUEUED, reason__startswith="lease expired")
    assert recoveries.count() == 1
    assert job.events.filter(to_state=S.COMPLETED).count() == 1


@pytest.mark.slow
def test_jobs_retry_on_rabbitmq_while_s3_is_down_and_complete_when_it_returns(user, upload, celery_process,
                                                                              create_jobs, amqp):
    s3_server = stack_plugin.STACK.s3
    if s3_server is None:
        pytest.skip("S3_ENDPOINT_URL names an external server; this test restarts its own")
    # Created while S3 is up (creation checks the input exists); the workers start after it stops.
    ids = create_jobs([upload(user, os.urandom(64 * 1024), f"retry{i}.bin") for i in range(3)])
    s3_server.stop()
    try:
        celery_process("worker", extra_env={**amqp, **NO_POISON})
        celery_process("beat", extra_env={**amqp, **NO_POISON})
        # Each retry's countdown goes through RabbitMQ's delayed-delivery queues and back to "jobs".
        wait_until(lambda: all(Job.objects.get(pk=i).events.filter(to_state=S.RETRYING).exists() for i in ids),
                   60, "every job to be RETRYING")
    finally:
        s3_server.start()

    for job_id in ids:
        done = wait_for_state(job_id, S.COMPLETED, timeout=90)
        assert done.attempts >= 2
        assert done.events.filter(to_state=S.COMPLETED).count() == 1


@pytest.mark.slow
def test_no_job_is_lost_on_rabbitmq_across_200_jobs_with_random_worker_kills(user, upload, celery_process,
                                                                            create_jobs, amqp):
    jobs, max_kills, deadline = 200, 15, within(300)
    rng = random.Random(20261201)
    keys, digests = [], []
    for i in range(jobs):
        data = os.urandom(rng.randint(1, 6) * 16 * 1024)
        keys.append(upload(user, data, f"chaos-{i}.bin"))
        digests.append(hashlib.sha256(data).hexdigest())
    ids = create_jobs(keys, chunk_delay=0.1, chunk_size=16 * 1024)
    expected = dict(zip(ids, digests, strict=True))
    env = {**amqp, **NO_POISON}
    celery_process("beat", extra_env=env)
    workers = [celery_process("worker", name=f"chaos{i}", concurrency=2, extra_env=env) for i in range(2)]

    kills = 0
    started = time.monotonic()
    next_kill = started + rng.uniform(1.0, 3.0)
    while Job.objects.filter(pk__in=ids).exclude(state=S.COMPLETED).exists():
        lost = list(Job.objects.filter(pk__in=ids, state__in=[S.FAILED, S.DEAD, S.CANCELLED])
                    .values_list("id", "state", "error_message"))
        assert not lost, f"jobs ended other than COMPLETED: {lost}"
        assert time.monotonic() - started < deadline, f"not all jobs completed in {deadline}s"
        busy = [i for i, w in enumerate(workers) if w.is_ready() and Job.objects.filter(
            pk__in=ids, state=S.PROCESSING, worker__startswith=f"{w.node}@").exists()]
        if time.monotonic() >= next_kill and kills < max_kills and busy:
            victim = rng.choice(busy)
            workers[victim].kill()
            kills += 1
            workers[victim] = celery_process("worker", name=f"chaos{victim}-{kills}", concurrency=2,
                                             extra_env=env, wait=False)
            next_kill = time.monotonic() + rng.uniform(1.0, 3.0)
        time.sleep(0.2)

    done = list(Job.objects.filter(pk__in=ids))
    assert len(done) == jobs
    assert kills > 0
    for job in done:
        assert job.state == S.COMPLETED
        assert job.result["sha256"] == expected[str(job.id)]
        assert job.events.filter(to_state=S.COMPLETED).count() == 1
    keys = set(storage.list_keys(storage.output_bucket(), storage.prefixed("")))
    assert all(storage.output_key(job.id, "result.json") in keys for job in done)
    print(f"\nchaos on RabbitMQ: {jobs} jobs, {kills} worker kills, "
          f"{sum(j.worker_deaths for j in done)} jobs recovered from a dead worker, "
          f"all completed in {time.monotonic() - started:.1f}s")
