"""manage.py prune --older-than DAYS: finished jobs and their objects go, everything else stays."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

import storage
from jobs.models import Job, JobState
from jobs.services.create import job_create

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("prune", *args, stdout=out)
    return out.getvalue()


def age(job, days: int) -> None:
    # Test setup: pretend the job finished (or last changed) `days` ago.
    past = timezone.now() - timedelta(days=days)
    Job.objects.filter(pk=job.pk).update(finished_at=past if job.finished_at else None, updated_at=past,
                                         created_at=past)


def with_outputs(job) -> list[str]:
    keys = [storage.output_key(job.id, name) for name in ("result.json", "extra.csv")]
    for key in keys:
        storage.put_bytes(storage.output_bucket(), key, b"{}")
    return keys


def exists(bucket: str, key: str) -> bool:
    try:
        storage.head(bucket, key)
    except storage.ObjectNotFound:
        return False
    return True


def test_prune_removes_old_finished_jobs_with_their_outputs_and_input(user, make_job):
    job = make_job(user, JobState.FAILED)
    outputs = with_outputs(job)
    age(job, 10)
    out = run("--older-than", "7")
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not any(exists(storage.output_bucket(), key) for key in outputs)
    assert not exists(job.input_bucket, job.input_key)
    assert f"removed {job.id} CSV_ROW_COUNT FAILED" in out and "2 output object(s), input deleted" in out
    assert "removed 1 job(s)" in out


def test_prune_keeps_recent_and_unfinished_jobs(user, make_job):
    recent = make_job(user, JobState.FAILED)
    running = make_job(user, JobState.PROCESSING)
    waiting = make_job(user)
    age(running, 30)
    age(waiting, 30)
    assert "removed 0 job(s)" in run("--older-than", "7")
    assert Job.objects.filter(pk__in=[recent.pk, running.pk, waiting.pk]).count() == 3
    assert exists(recent.input_bucket, recent.input_key)


def test_prune_dry_run_lists_and_deletes_nothing(user, make_job):
    job = make_job(user, JobState.DEAD)
    outputs = with_outputs(job)
    age(job, 10)
    out = run("--older-than", "7", "--dry-run")
    assert f"would remove {job.id}" in out and "2 output object(s)" in out and "would remove 1 job(s)" in out
    assert Job.objects.filter(pk=job.pk).exists() and exists(storage.output_bucket(), outputs[0])


def test_prune_keeps_an_input_that_a_remaining_job_still_uses(user, make_job):
    old = make_job(user, JobState.FAILED)
    reuse = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=old.input_key).job
    age(old, 10)
    out = run("--older-than", "7")
    assert "input kept (another job uses it)" in out
    assert exists(old.input_bucket, old.input_key) and Job.objects.filter(pk=reuse.pk).exists()


@pytest.mark.parametrize("args", [["--older-than", "-1"], ["--older-than", "soon"], []])
def test_prune_rejects_a_missing_or_bad_age(args):
    with pytest.raises(CommandError):
        run(*args)
