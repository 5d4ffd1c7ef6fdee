"""manage.py requeue_dead and manage.py sweep."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from jobs.models import DeadLetter, Job, JobState
from tests.conftest import purge_queues

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def states(*jobs) -> list[str]:
    return [Job.objects.get(pk=j.pk).state for j in jobs]


def test_requeue_dead_refuses_to_run_without_a_filter_or_all(user, make_job):
    job = make_job(user, JobState.DEAD)
    with pytest.raises(CommandError, match="without a filter"):
        run("requeue_dead")
    assert states(job) == [JobState.DEAD]


def test_requeue_dead_all_replays_every_dead_job_and_prints_a_summary(user, make_job):
    dead = [make_job(user, JobState.DEAD), make_job(user, JobState.DEAD)]
    failed = make_job(user, JobState.FAILED)
    out = run("requeue_dead", "--all")
    assert states(*dead, failed) == [JobState.QUEUED, JobState.QUEUED, JobState.FAILED]
    assert all(f"replayed {j.id} CSV_ROW_COUNT" in out for j in dead)
    assert out.strip().endswith("replayed 2 job(s), skipped 0")
    assert [DeadLetter.objects.get(job=j).replay_count for j in dead] == [1, 1]


def test_requeue_dead_twice_replays_nothing_the_second_time(user, make_job):
    make_job(user, JobState.DEAD)
    run("requeue_dead", "--all")
    assert run("requeue_dead", "--all").strip() == "replayed 0 job(s), skipped 0"


def test_requeue_dead_dry_run_lists_and_changes_nothing(user, make_job):
    job = make_job(user, JobState.DEAD)
    out = run("requeue_dead", "--all", "--dry-run")
    assert f"would replay {job.id}" in out and "dry run: would replay 1 job(s)" in out
    assert states(job) == [JobState.DEAD]


def test_requeue_dead_filters_by_id_and_reports_ids_that_are_not_dead(user, make_job):
    one, two, alive = make_job(user, JobState.DEAD), make_job(user, JobState.DEAD), make_job(user)
    out = run("requeue_dead", "--id", str(one.id), "--id", str(alive.id))
    assert states(one, two) == [JobState.QUEUED, JobState.DEAD]
    assert f"skipped {alive.id}: no DEAD job with this id" in out


def test_requeue_dead_filters_by_job_type(user, make_job):
    job = make_job(user, JobState.DEAD)
    assert "replayed 0 job(s)" in run("requeue_dead", "--job-type", "JSON_CANONICALIZE")
    assert states(job) == [JobState.DEAD]
    run("requeue_dead", "--job-type", "CSV_ROW_COUNT")
    assert states(job) == [JobState.QUEUED]


def test_requeue_dead_filters_by_since_as_an_age_or_an_iso_date(user, make_job):
    old, recent = make_job(user, JobState.DEAD), make_job(user, JobState.DEAD)
    DeadLetter.objects.filter(job=old).update(died_at=timezone.now() - timedelta(days=3))
    run("requeue_dead", "--since", "2h")
    assert states(old, recent) == [JobState.DEAD, JobState.QUEUED]
    four_days_ago = (timezone.now() - timedelta(days=4)).date().isoformat()
    run("requeue_dead", "--since", four_days_ago)
    assert states(old) == [JobState.QUEUED]


def test_requeue_dead_limit_takes_the_oldest_deaths_first(user, make_job):
    first, second = make_job(user, JobState.DEAD), make_job(user, JobState.DEAD)
    DeadLetter.objects.filter(job=first).update(died_at=timezone.now() - timedelta(hours=1))
    run("requeue_dead", "--all", "--limit", "1")
    assert states(first, second) == [JobState.QUEUED, JobState.DEAD]


@pytest.mark.parametrize("args, message", [
    (["--id", "not-a-uuid"], "not a job id"),
    (["--since", "last tuesday"], "ISO date"),
    (["--since", "2024-02-30"], "ISO date"),
    (["--all", "--limit", "0"], "at least 1"),
])
def test_requeue_dead_rejects_bad_options_clearly(args, message):
    with pytest.raises(CommandError, match=message):
        run("requeue_dead", *args)


def test_requeue_dead_with_an_unknown_id_replays_nothing():
    out = run("requeue_dead", "--id", str(uuid.uuid4()))
    assert "no DEAD job with this id" in out and "replayed 0" in out


def test_sweep_runs_one_pass_and_prints_the_counts(user, make_job, settings):
    stuck = make_job(user)
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_STUCK_SECONDS + 5)
    Job.objects.filter(pk=stuck.pk).update(created_at=long_ago)
    out = run("sweep")
    assert "stuck_created: 1" in out and "expired_leases: 0" in out and "total: 1" in out
    assert states(stuck) == [JobState.QUEUED]
    assert "total: 0" in run("sweep")


def test_a_queued_job_is_republished_with_a_doubling_pause_not_on_every_sweep(user, make_job, settings):
    job = make_job(user, JobState.QUEUED)
    period = timedelta(seconds=settings.JOB_STUCK_SECONDS)

    def age(publish_count: int, since_last: timedelta) -> None:
        Job.objects.filter(pk=job.pk).update(publish_count=publish_count, queued_at=timezone.now() - 100 * period,
                                             updated_at=timezone.now() - since_last)

    def republished() -> bool:
        purge_queues()  # its message is lost every time: the case republishing is for
        before = Job.objects.get(pk=job.pk).publish_count
        run("sweep")
        return Job.objects.get(pk=job.pk).publish_count == before + 1

    age(1, period + timedelta(seconds=1))
    assert republished()
    assert not republished(), "republished again on the very next sweep"
    age(3, 3 * period)  # the third republish waits 4 periods after the second
    assert not republished()
    age(3, 4 * period + timedelta(seconds=1))
    assert republished()
    age(20, 31 * period)  # the pause stops growing at 32 periods
    assert not republished()
    age(20, 32 * period + timedelta(seconds=1))
    assert republished()
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED
