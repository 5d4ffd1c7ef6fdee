"""The sweeper acts only on what it saw: a claim or retry newer than its read survives it, and
it republishes only the messages the broker has really lost."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from jobs.models import Job, JobEvent, JobState
from jobs.services.create import job_create
from jobs.services.execution import (
    job_after_transient_error,
    job_claim,
    job_complete,
    job_heartbeat,
    job_record_progress,
)
from jobs.services.queue import job_messages_waiting, job_publish
from jobs.sweeper import lease_expired, retry_overdue, stalled, sweep
from tests.conftest import purge_queues
from tests.factories import JobFactory

S = JobState
CSV = b"name,age\nann,31\n"


def snapshot(job: Job) -> tuple[dict, list]:
    return (Job.objects.filter(pk=job.pk).values().get(),
            list(JobEvent.objects.filter(job_id=job.pk).values_list("id", "to_state")))


def expire_lease(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def sweepers_read(job: Job) -> Job:
    """The row as the sweep's query returns it."""
    return Job.objects.get(pk=job.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("deaths_before", [0, 2], ids=["requeue", "poison_pill"])
def test_a_claim_made_after_the_sweeper_read_the_row_survives(user, settings, deaths_before):
    settings.JOB_MAX_WORKER_DEATHS = 3
    job = job_claim(job_id=JobFactory(owner=user, state=S.QUEUED, worker_deaths=deaths_before).id, worker="A")
    expire_lease(job)
    seen, now = sweepers_read(job), timezone.now()
    # Meanwhile an overlapping sweep takes the job back and worker B claims it.
    Job.objects.filter(pk=job.pk).update(worker_deaths=0)
    assert sweep()["expired_leases"] == 1
    b = job_claim(job_id=job.id, worker="B")
    before = snapshot(b)

    assert lease_expired(job=seen, now=now) is None

    assert snapshot(b) == before
    stored = Job.objects.get(pk=job.pk)
    assert (stored.state, stored.worker, stored.claim_token) == (S.PROCESSING, "B", b.claim_token)


@pytest.mark.django_db
def test_a_heartbeat_after_the_sweeper_read_the_row_keeps_the_job_with_its_worker(user):
    job = job_claim(job_id=JobFactory(owner=user, state=S.QUEUED).id, worker="A")
    expire_lease(job)
    seen, now = sweepers_read(job), timezone.now()
    assert job_heartbeat(job_id=job.id, claim_token=job.claim_token)  # A was slow, not dead

    assert lease_expired(job=seen, now=now) is None

    stored = Job.objects.get(pk=job.pk)
    assert (stored.state, stored.claim_token, stored.worker_deaths) == (S.PROCESSING, job.claim_token, 0)
    assert job_complete(job=job, result={"rows": 1}, result_keys=[], actor="worker:A").state == S.COMPLETED


@pytest.mark.django_db
def test_an_expired_lease_is_taken_back_and_counted_as_a_death(user):
    job = job_claim(job_id=JobFactory(owner=user, state=S.QUEUED).id, worker="A")
    expire_lease(job)

    assert sweep()["expired_leases"] == 1

    stored = Job.objects.get(pk=job.pk)
    assert (stored.state, stored.claim_token, stored.worker_deaths) == (S.QUEUED, None, 1)


def stall(job: Job) -> None:
    """No progress written for longer than JOB_STALL_SECONDS; the lease is kept fresh, as a
    worker that heartbeats but whose job does not move keeps it."""
    Job.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(seconds=settings.JOB_STALL_SECONDS + 1))


@pytest.mark.django_db
def test_a_stalled_job_is_handed_back_and_its_worker_loses_the_claim(user, settings):
    settings.JOB_STALL_SECONDS = 30
    stuck = job_claim(job_id=JobFactory(owner=user, state=S.QUEUED).id, worker="A")
    fresh = job_claim(job_id=JobFactory(owner=user, state=S.QUEUED).id, worker="B")
    stall(stuck)
    assert Job.objects.get(pk=stuck.pk).is_stalled and not Job.objects.get(pk=fresh.pk).is_stalled
    before = snapshot(fresh)

    assert sweep()["stalled"] == 1

    stored = Job.objects.get(pk=stuck.pk)
    assert (stored.state, stored.claim_token, stored.worker_deaths, stored.is_stalled) == (S.QUEUED, None, 0, False)
    event = JobEvent.objects.filter(job_id=stuck.pk).last()
    assert (event.from_state, event.to_state, event.actor) == (S.PROCESSING, S.QUEUED, "sweeper")
    assert event.reason.startswith("stalled: no progress for 3")
    # Worker A's claim no longer holds the job: its next progress call stops it.
    assert job_heartbeat(job_id=stuck.id, claim_token=stuck.claim_token) is False
    assert job_record_progress(job=stuck, bytes_read=10) is True
    assert snapshot(fresh) == before


@pytest.mark.django_db
def test_progress_written_after_the_sweeper_read_the_row_keeps_the_job_with_its_worker(user, settings):
    settings.JOB_STALL_SECONDS = 30
    job = job_claim(job_id=JobFactory(owner=user, state=S.QUEUED).id, worker="A")
    stall(job)
    seen, now = sweepers_read(job), timezone.now()
    assert job_record_progress(job=job, bytes_read=10) is False  # it moved again

    assert stalled(job=seen, now=now) is None

    stored = Job.objects.get(pk=job.pk)
    assert (stored.state, stored.claim_token) == (S.PROCESSING, job.claim_token)


@pytest.mark.django_db
def test_a_stalled_job_on_its_last_attempt_goes_dead(user, settings):
    settings.JOB_STALL_SECONDS = 30
    job = job_claim(job_id=JobFactory(owner=user, state=S.QUEUED, attempts=4, max_attempts=5).id, worker="A")
    stall(job)

    assert sweep()["stalled"] == 1

    stored = Job.objects.get(pk=job.pk)
    assert (stored.state, stored.error_code, stored.worker_deaths) == (S.DEAD, "attempts_exhausted", 0)
    assert stored.dead_letter.reason.startswith("attempts exhausted (stalled: no progress for")


def retrying(owner) -> Job:
    job = job_claim(job_id=JobFactory(owner=owner, state=S.QUEUED).id, worker="A")
    return job_after_transient_error(job=job, error=OSError("blink"), traceback="", actor="worker:A")[0]


@pytest.mark.django_db
def test_a_retry_that_is_not_overdue_is_left_to_its_own_message(user):
    job = retrying(user)
    before = snapshot(job)

    assert sweep()["overdue_retries"] == 0
    assert snapshot(job) == before


@pytest.mark.django_db
def test_a_retry_that_failed_again_since_the_sweeper_read_it_waits_for_its_new_backoff(user):
    job = retrying(user)
    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    seen, now = sweepers_read(job), timezone.now()
    # Meanwhile its message comes back, and the attempt fails again: a new backoff.
    again = job_after_transient_error(job=job_claim(job_id=job.id, worker="B"), error=OSError("blink"),
                                      traceback="", actor="worker:B")[0]
    before = snapshot(again)

    assert retry_overdue(job=seen, now=now) is False

    assert snapshot(again) == before
    assert Job.objects.get(pk=job.pk).next_attempt_at > now


@pytest.fixture
def empty_broker():
    purge_queues()
    yield
    purge_queues()


def backlog(owner, upload, n: int) -> list[Job]:
    """n QUEUED jobs, oldest first, their messages published, waiting long enough that the
    sweeper suspects them."""
    key = upload(owner, CSV)
    jobs = [job_create(owner=owner, job_type="CSV_ROW_COUNT", input_key=key).job for _ in range(n)]
    long_ago = timezone.now() - timedelta(seconds=10 * settings.JOB_STUCK_SECONDS)
    for i, job in enumerate(jobs):
        Job.objects.filter(pk=job.pk).update(queued_at=long_ago + timedelta(milliseconds=i), updated_at=long_ago)
    return jobs


def publish_counts(jobs: list[Job]) -> list[int]:
    counts = dict(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("id", "publish_count"))
    return [counts[j.pk] for j in jobs]


@pytest.mark.django_db(transaction=True)
def test_a_backlog_whose_messages_wait_in_the_broker_gets_no_duplicates(user, upload, empty_broker):
    jobs = backlog(user, upload, 50)
    assert job_messages_waiting() == 50

    assert sweep()["republished"] == 0

    assert job_messages_waiting() == 50
    assert publish_counts(jobs) == [1] * 50


@pytest.mark.django_db(transaction=True)
def test_a_backlog_whose_messages_were_lost_is_published_again(user, upload, empty_broker):
    jobs = backlog(user, upload, 50)
    purge_queues()  # what Redis restarted empty leaves

    assert sweep()["republished"] == 50

    assert job_messages_waiting() == 50
    assert publish_counts(jobs) == [2] * 50
    assert sweep()["republished"] == 0  # their messages wait again


@pytest.mark.django_db(transaction=True)
def test_only_as_many_messages_as_are_missing_are_republished_oldest_first(user, upload, empty_broker):
    jobs = backlog(user, upload, 50)
    purge_queues()
    for job in jobs[30:]:  # the newest 20 were published again after the loss
        job_publish(job=job, task_id=job.celery_task_id)

    assert sweep()["republished"] == 30

    assert publish_counts(jobs) == [2] * 30 + [1] * 20
    assert job_messages_waiting() == 50
