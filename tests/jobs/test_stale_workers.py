"""A stale worker changes nothing: its claim was taken over, so its late moves are refused.

The scene, deterministic and in this process: worker A claims a job, stops heartbeating
(its lease is made to expire), the real sweeper queues the job again, and worker B claims
it. Whatever A does afterwards, through the same runner functions a Celery task calls,
leaves B's claim, the state, the attempts and the events exactly as they were.
"""

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

import storage
from jobs import runner
from jobs.errors import TransitionRefused
from jobs.models import DeadLetter, Job, JobEvent, JobState
from jobs.services.create import job_create
from jobs.services.execution import job_cancelled_by_worker, job_claim, job_record_progress
from jobs.sweeper import sweep

pytestmark = pytest.mark.django_db
S = JobState
CSV = b"name,age\nann,31\nbob,42\n"
BROKEN_CSV = b'name,age\n"unterminated,1\n'


def taken_over(owner, upload, data: bytes = CSV, max_attempts: int = 5):
    """(A's claim, B's claim) of one job, after the sweeper took it back from A."""
    key = upload(owner, data, "input.csv")
    job = job_create(owner=owner, job_type="CSV_ROW_COUNT", input_key=key, max_attempts=max_attempts).job
    stale = job_claim(job_id=job.id, worker="A")
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert sweep()["expired_leases"] == 1
    current = job_claim(job_id=job.id, worker="B")
    assert current is not None and current.claim_token != stale.claim_token
    return stale, current


def snapshot(job: Job) -> tuple[dict, list]:
    """The row as stored and its events."""
    return (Job.objects.filter(pk=job.pk).values().get(),
            list(JobEvent.objects.filter(job_id=job.pk).values_list("id", "from_state", "to_state", "actor")))


def assert_b_still_runs_it(current: Job, before) -> None:
    assert snapshot(current) == before
    stored = Job.objects.get(pk=current.pk)
    assert (stored.state, stored.worker, stored.claim_token, stored.attempts) == (
        S.PROCESSING, "B", current.claim_token, 2)
    assert not DeadLetter.objects.filter(job_id=current.pk).exists()


def test_a_stale_workers_late_completion_changes_nothing_and_b_completes_the_job(user, upload):
    stale, current = taken_over(user, upload)
    before = snapshot(current)

    assert runner.job_attempt(job=stale, worker="A") == "lost"

    assert_b_still_runs_it(current, before)
    assert runner.job_attempt(job=current, worker="B") == S.COMPLETED
    done = Job.objects.get(pk=current.pk)
    assert (done.state, done.result["rows"], done.attempts) == (S.COMPLETED, 2, 2)
    assert done.events.filter(to_state=S.COMPLETED).count() == 1


def test_a_stale_workers_late_failure_changes_nothing(user, upload):
    stale, current = taken_over(user, upload, data=BROKEN_CSV)
    before = snapshot(current)

    assert runner.job_attempt(job=stale, worker="A") == "lost"

    assert_b_still_runs_it(current, before)
    assert Job.objects.get(pk=current.pk).error_message == ""


@pytest.mark.parametrize("error", [storage.StorageUnavailable("S3 is away"), OSError("connection reset"),
                                   SoftTimeLimitExceeded("soft time limit"), RuntimeError("a bug")],
                         ids=["storage", "network", "soft_time_limit", "unexpected"])
@pytest.mark.parametrize("max_attempts", [2, 5], ids=["attempts_exhausted", "attempts_left"])
def test_a_stale_workers_late_error_neither_retries_nor_kills_the_job(user, upload, error, max_attempts):
    """With max_attempts 2, B's attempt is the last: an error judged on the row as it is now
    would make B's run DEAD. (A job whose expired attempt was its last goes DEAD at the
    sweep, so there is no later claim for a stale worker to disturb.)"""
    stale, current = taken_over(user, upload, max_attempts=max_attempts)
    before = snapshot(current)

    assert runner.job_handle_transient(job=stale, error=error, worker="A") == ("lost", None)

    assert_b_still_runs_it(current, before)


def test_a_stale_workers_late_cancel_and_progress_change_nothing(user, upload):
    stale, current = taken_over(user, upload)
    before = snapshot(current)

    assert job_record_progress(job=stale, bytes_read=7) is True  # told to stop
    with pytest.raises(TransitionRefused, match="no longer held by this worker"):
        job_cancelled_by_worker(job=stale, actor="worker:A")

    assert_b_still_runs_it(current, before)
