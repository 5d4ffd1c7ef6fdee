"""Backoff holds: a RETRYING job is not claimed before next_attempt_at, whatever message
arrives early; the early message is put off to the due time, not dropped."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import runner
from jobs.models import Job, JobEvent, JobState
from jobs.services.execution import job_claim
from jobs.services.queue import job_publish
from tests.conftest import wait_for_state, wait_until
from tests.factories import JobFactory
from tests.support.deadlines import within

S = JobState
CSV = b"name,age\nann,31\nbob,42\n"


def waiting_retry(owner, upload, due_in: float) -> Job:
    """A RETRYING job (its first attempt failed) whose backoff ends `due_in` seconds from now."""
    return JobFactory(owner=owner, state=S.RETRYING, input_key=upload(owner, CSV), input_size=len(CSV),
                      next_attempt_at=timezone.now() + timedelta(seconds=due_in))


def snapshot(job: Job) -> tuple[dict, list]:
    return (Job.objects.filter(pk=job.pk).values().get(),
            list(JobEvent.objects.filter(job_id=job.pk).values_list("id", "to_state")))


@pytest.mark.django_db
def test_a_retry_is_not_claimed_before_its_backoff_is_over(user, upload):
    job = waiting_retry(user, upload, due_in=60)
    before = snapshot(job)

    assert job_claim(job_id=job.id, worker="early") is None

    assert snapshot(job) == before


@pytest.mark.django_db
def test_an_early_message_is_deferred_to_the_due_time_and_runs_once_due(user, upload):
    job = waiting_retry(user, upload, due_in=60)
    before = snapshot(job)

    outcome, delay = runner.job_run_task(job_id=str(job.id), worker="early")

    assert outcome == "deferred" and 0 < delay <= 60 + runner.DEFER_MARGIN
    assert snapshot(job) == before
    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())  # the backoff is over
    assert runner.job_run_task(job_id=str(job.id), worker="on-time") == (S.COMPLETED, None)
    done = Job.objects.get(pk=job.pk)
    assert (done.state, done.attempts, done.result["rows"]) == (S.COMPLETED, 2, 2)


@pytest.mark.django_db(transaction=True)
def test_a_worker_given_an_early_message_runs_the_retry_when_due_and_only_then(user, upload, worker):
    from django_celery_results.models import TaskResult

    job = waiting_retry(user, upload, due_in=within(3))
    due = job.next_attempt_at
    before = snapshot(job)
    extra = str(uuid.uuid4())

    assert job_publish(job=job, task_id=extra)  # a duplicate or a sweeper's republish, before the due time
    wait_until(lambda: TaskResult.objects.filter(task_id=extra, status="RETRY").exists(), 30,
               "the worker to put the early message off")

    assert timezone.now() < due, "looked after the due time: raise TEST_DEADLINE_SLACK"
    assert snapshot(job) == before  # not claimed: attempts and events as they were
    done = wait_for_state(job.id, S.COMPLETED, timeout=30 + within(3))
    claims = done.events.filter(to_state=S.PROCESSING)
    assert claims.count() == 1 and claims.get().created_at >= due
    assert (done.attempts, done.result["rows"]) == (2, 2)
