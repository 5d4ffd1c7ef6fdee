"""The run message's input hint only gives the worker's read a head start: the job always
reads the object its own row names."""

from __future__ import annotations

import pytest

import storage
from jobs import runner, services
from jobs.models import Job, JobState

pytestmark = pytest.mark.django_db


def queued_job(owner, key: str) -> Job:
    job = services.job_create(owner=owner, job_type="CSV_ROW_COUNT", input_key=key).job
    if job.state == JobState.CREATED:  # inside the test's transaction the enqueue waits for a commit
        job = services.job_enqueue(job_id=job.id, reason="test", actor="test")
    return job


@pytest.mark.parametrize("hint", ["own", "other user's object", "missing object", ["only-one"], "text", [1, 2], None])
def test_whatever_the_hint_names_the_job_counts_its_own_input(user, other_user, upload, hint):
    bucket = storage.input_bucket()
    mine = upload(user, b"n\n1\n2\n3\n", "mine.csv")
    theirs = upload(other_user, b"n\n1\n", "theirs.csv")
    named = {"own": [bucket, mine], "other user's object": [bucket, theirs],
             "missing object": [bucket, storage.upload_key(user.pk, "never-uploaded.csv")]}
    hint = named.get(hint, hint) if isinstance(hint, str) else hint
    job = queued_job(user, mine)

    assert runner.job_run(job_id=job.id, worker="w1", input_hint=hint) == "COMPLETED"

    job.refresh_from_db()
    assert job.state == JobState.COMPLETED and job.result["rows"] == 3
    if hint == [bucket, mine]:  # the started read was used, read to the end, its connection kept
        assert storage.fast.get().spare is not None


def test_a_hinted_read_is_dropped_when_the_claim_is_refused(user, upload):
    key = upload(user, b"n\n1\n", "once.csv")
    job = queued_job(user, key)
    assert runner.job_run(job_id=job.id, worker="w1", input_hint=[storage.input_bucket(), key]) == "COMPLETED"

    # A duplicate message: the claim is refused, the started read is closed, nothing changes.
    assert runner.job_run(job_id=job.id, worker="w2", input_hint=[storage.input_bucket(), key]) == "skipped"
    assert Job.objects.get(pk=job.pk).worker == "w1"
    assert storage.read_bytes(storage.input_bucket(), key, 100) == b"n\n1\n"
