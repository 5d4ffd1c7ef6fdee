"""The broker: Celery on kombu's stock Redis transport, against the real Redis and a real worker."""

from __future__ import annotations

import redis
from django.conf import settings
from django_celery_results.models import TaskResult

from jobplatform.celery import app
from tests.conftest import wait_until


def run_sweep() -> str:
    task_id = app.send_task("jobs.sweep").id
    wait_until(lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS").exists(), 30,
               f"task {task_id} recorded as run")
    return task_id


def test_a_published_task_runs_on_a_worker(worker):
    run_sweep()


def test_publishing_goes_on_after_redis_cuts_every_connection(worker):
    run_sweep()
    admin = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    finally:
        admin.close()

    run_sweep()
