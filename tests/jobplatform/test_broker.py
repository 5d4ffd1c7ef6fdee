"""The broker: Celery on kombu's stock Redis transport, against the real Redis and a real
worker. A job's run message is published through it on commit."""

from __future__ import annotations

import redis
from django.conf import settings

from jobs.models import JobState
from jobs.services.create import job_create
from tests.conftest import wait_for_state


def run_a_job(user, upload) -> None:
    job = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=upload(user, b"a\n1\n", "one.csv")).job
    assert wait_for_state(job.id, JobState.COMPLETED, timeout=30).result["rows"] == 1


def test_a_published_job_runs_on_a_worker(worker, user, upload):
    run_a_job(user, upload)


def test_publishing_goes_on_after_redis_cuts_every_connection(worker, user, upload):
    run_a_job(user, upload)
    admin = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    finally:
        admin.close()

    run_a_job(user, upload)
