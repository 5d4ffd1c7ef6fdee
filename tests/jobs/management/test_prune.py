"""Retention: `manage.py prune`, the periodic jobs.prune, and jobs.services.maintenance.

Old finished jobs go with their events, task results, dead letters and objects in the real
S3 server; recent, unfinished and still-used things stay; deletes run in bounded batches
that skip locked rows; a batch that storage refuses is kept whole and taken again later.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone
from django_celery_results.models import TaskResult

import storage
from jobs.models import DeadLetter, Job, JobEvent, JobState
from jobs.services.create import job_create
from jobs.services.maintenance import jobs_prune, retention_prune
from tests.conftest import wait_until
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("prune", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def age(job, days: int) -> None:
    # Test setup: pretend the job finished `days` ago.
    past = timezone.now() - timedelta(days=days)
    Job.objects.filter(pk=job.pk).update(finished_at=past, updated_at=past, created_at=past)
    DeadLetter.objects.filter(job_id=job.pk).update(died_at=past)


def with_outputs(job, names=("result.json", "extra.csv")) -> list[str]:
    keys = [storage.output_key(job.id, name) for name in names]
    for key in keys:
        storage.put_bytes(storage.output_bucket(), key, b"{}")
    return keys


def exists(bucket: str, key: str) -> bool:
    try:
        storage.head(bucket, key)
    except storage.ObjectNotFound:
        return False
    return True


def task_result(task_id: str, days_ago: int = 0) -> TaskResult:
    result = TaskResult.objects.create(task_id=task_id, status="SUCCESS", task_name="jobs.run_job")
    TaskResult.objects.filter(pk=result.pk).update(date_done=timezone.now() - timedelta(days=days_ago))
    return result


def completed_job(user, upload, *, worker_died: bool = False) -> tuple[Job, list[str]]:
    """A COMPLETED row with its input and outputs in the bucket (written directly: the runner's
    own outputs are its tests' business). When a worker died on an earlier attempt, that
    attempt's partial output is still there too."""
    key = upload(user, b"a,b\n1,2\n", "done.csv")
    job = JobFactory(owner=user, input_key=key, state=JobState.COMPLETED, attempts=2 if worker_died else 1,
                     worker_deaths=1 if worker_died else 0,
                     task_ids=[str(uuid.uuid4()) for _ in range(2 if worker_died else 1)])
    outputs = with_outputs(job, ("result.json",))
    Job.objects.filter(pk=job.pk).update(result_keys=outputs)
    stray = with_outputs(job, ("partial.csv",)) if worker_died else []
    return job, outputs + stray


def test_prune_removes_old_finished_jobs_with_events_objects_and_task_results(user, make_job, upload):
    failed = make_job(user, JobState.FAILED)
    outputs = with_outputs(failed)
    done, done_outputs = completed_job(user, upload)
    retried, retried_outputs = completed_job(user, upload, worker_died=True)
    for job in (failed, done, retried):
        task_result(job.task_ids[-1])
        age(job, 40)
    out = run()
    assert "removed 3 job(s)" in out
    assert not Job.objects.filter(pk__in=[failed.pk, done.pk, retried.pk]).exists()
    assert not JobEvent.objects.filter(job_id__in=[failed.pk, done.pk, retried.pk]).exists()
    assert not TaskResult.objects.filter(task_id__in=[*failed.task_ids, *done.task_ids, *retried.task_ids]).exists()
    for key in outputs + done_outputs + retried_outputs:
        assert not exists(storage.output_bucket(), key), key
    for job in (failed, done, retried):
        assert not exists(job.input_bucket, job.input_key)
        assert storage.list_keys(storage.output_bucket(), storage.output_prefix(job.id)) == []


def test_prune_keeps_recent_and_unfinished_jobs_and_their_objects(user, make_job):
    recent = make_job(user, JobState.FAILED)
    outputs = with_outputs(recent)
    running, waiting = make_job(user, JobState.PROCESSING), make_job(user)
    age(running, 400)
    age(waiting, 400)
    assert "removed 0 job(s)" in run()
    assert Job.objects.filter(pk__in=[recent.pk, running.pk, waiting.pk]).count() == 3
    assert exists(recent.input_bucket, recent.input_key) and exists(storage.output_bucket(), outputs[0])


def test_prune_keeps_an_input_that_a_remaining_job_still_uses(user, make_job):
    old = make_job(user, JobState.FAILED)
    reuse = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=old.input_key).job
    age(old, 40)
    run()
    assert not Job.objects.filter(pk=old.pk).exists()
    assert exists(old.input_bucket, old.input_key) and Job.objects.filter(pk=reuse.pk).exists()


def test_dead_jobs_and_dead_letters_follow_their_own_retention(user, make_job, settings):
    settings.JOB_RETENTION_DAYS, settings.DEAD_LETTER_RETENTION_DAYS = 30, 90
    dead_60, dead_100 = make_job(user, JobState.DEAD), make_job(user, JobState.DEAD)
    age(dead_60, 60)
    age(dead_100, 100)
    run()
    assert Job.objects.filter(pk=dead_60.pk).exists() and DeadLetter.objects.filter(job=dead_60).exists()
    assert not Job.objects.filter(pk=dead_100.pk).exists()
    assert not DeadLetter.objects.filter(job_id=dead_100.pk).exists()


def test_the_dead_letter_of_a_replayed_job_expires_and_the_job_stays(user, make_job):
    replayed = make_job(user, JobState.DEAD)
    letter = DeadLetter.objects.get(job=replayed)
    DeadLetter.objects.filter(pk=letter.pk).update(died_at=timezone.now() - timedelta(days=100))
    Job.objects.filter(pk=replayed.pk).update(state=JobState.QUEUED, finished_at=None)  # as a replay leaves it
    report = retention_prune()
    assert report.dead_letters == 1 and not DeadLetter.objects.filter(pk=letter.pk).exists()
    assert Job.objects.filter(pk=replayed.pk).exists()


def test_task_results_expire_after_their_retention_in_batches(settings):
    settings.TASK_RESULT_RETENTION_DAYS = 7
    old = [task_result(f"old-{i}", days_ago=8) for i in range(5)]
    fresh = task_result("fresh", days_ago=1)
    report = retention_prune(batch_size=2)
    assert report.task_results == 5 and report.batches >= 3
    assert not TaskResult.objects.filter(pk__in=[r.pk for r in old]).exists()
    assert TaskResult.objects.filter(pk=fresh.pk).exists()


def test_jobs_are_deleted_in_batches_of_the_given_size(user, make_job):
    jobs = [make_job(user, JobState.CANCELLED) for _ in range(5)]
    for job in jobs:
        age(job, 40)
    report = jobs_prune(cutoff=timezone.now() - timedelta(days=30), batch_size=2)
    assert (report.jobs, report.batches) == (5, 3)
    assert not Job.objects.filter(pk__in=[j.pk for j in jobs]).exists()


def test_a_batch_storage_refuses_is_kept_whole_and_the_next_run_removes_it(user, make_job, settings):
    job = make_job(user, JobState.FAILED)
    outputs = with_outputs(job)
    age(job, 40)
    bucket = settings.S3_OUTPUT_BUCKET
    settings.S3_OUTPUT_BUCKET = f"no-such-bucket-{uuid.uuid4().hex[:8]}"  # the server refuses every request
    with pytest.raises(CommandError, match="object storage refused"):
        run()
    assert Job.objects.filter(pk=job.pk).exists() and exists(job.input_bucket, job.input_key)
    assert JobEvent.objects.filter(job_id=job.pk).exists()
    settings.S3_OUTPUT_BUCKET = bucket
    assert "removed 1 job(s)" in run()
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not any(exists(bucket, key) for key in outputs) and not exists(job.input_bucket, job.input_key)


@pytest.mark.django_db(transaction=True)
def test_prune_skips_a_locked_row_without_waiting_and_takes_it_next_time(user, make_job):
    locked, free = make_job(user, JobState.FAILED), make_job(user, JobState.FAILED)
    for job in (locked, free):
        age(job, 40)
    holding, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with transaction.atomic():
            Job.objects.select_for_update().get(pk=locked.pk)
            holding.set()
            release.wait(30)  # released by the test, or at worst after 30 s

    thread = threading.Thread(target=hold_lock)
    thread.start()
    try:
        holding.wait(10)
        report = jobs_prune(cutoff=timezone.now() - timedelta(days=30))
        still_held = not release.is_set() and thread.is_alive()
    finally:
        release.set()
        thread.join()
    assert still_held  # the prune returned while the lock was held: it did not wait for it
    assert report.jobs == 1 and not Job.objects.filter(pk=free.pk).exists()
    assert Job.objects.filter(pk=locked.pk).exists()
    assert jobs_prune(cutoff=timezone.now() - timedelta(days=30)).jobs == 1


def test_dry_run_counts_and_deletes_nothing(user, make_job):
    job = make_job(user, JobState.FAILED)
    outputs = with_outputs(job)
    age(job, 40)
    out = run("--dry-run")
    assert "would remove 1 finished job(s)" in out and "would remove 0 DEAD job(s)" in out
    assert Job.objects.filter(pk=job.pk).exists() and exists(storage.output_bucket(), outputs[0])


def test_older_than_overrides_the_retention_for_every_finished_state(user, make_job):
    dead = make_job(user, JobState.DEAD)
    age(dead, 10)
    assert "removed 1 job(s)" in run("--older-than", "7")
    assert not Job.objects.filter(pk=dead.pk).exists()


@pytest.mark.parametrize("args", [["--older-than", "-1"], ["--older-than", "soon"], ["--batch-size", "0"],
                                  ["--max-seconds", "-5"]])
def test_prune_rejects_bad_arguments(args):
    with pytest.raises(CommandError):
        run(*args)


def test_beat_schedules_the_prune_hourly_on_the_maintenance_queue(settings):
    from jobplatform.settings import worker as worker_settings

    entry = worker_settings.CELERY_BEAT_SCHEDULE["prune"]
    assert entry["task"] == "jobs.prune" and entry["schedule"] == 3600.0
    assert settings.CELERY_TASK_ROUTES["jobs.prune"] == {"queue": "maintenance"}
    # beat would otherwise add celery.backend_cleanup, one unbatched delete of every expired result
    assert settings.CELERY_RESULT_EXPIRES is None


@pytest.mark.slow
def test_the_periodic_task_prunes_through_a_real_worker(worker, user, make_job):
    from jobplatform.celery import app

    job = make_job(user, JobState.FAILED)
    outputs = with_outputs(job)
    age(job, 40)
    app.send_task("jobs.prune")  # what beat sends every hour; routed to the maintenance queue
    wait_until(lambda: not Job.objects.filter(pk=job.pk).exists(), timeout=30, what="the job pruned")
    assert not any(exists(storage.output_bucket(), key) for key in outputs)
