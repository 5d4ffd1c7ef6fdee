"""A job runs end to end on a real worker: create, queue, claim, process, result in S3."""

import json

import pytest

import storage
from jobs.errors import JobError
from jobs.models import JobState
from jobs.services.actions import job_cancel
from jobs.services.create import job_create
from tests.conftest import wait_for_state, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CSV = b"name,age\nann,31\nbob,42\n"


def test_a_csv_job_completes_and_writes_its_result_to_the_output_bucket(user, upload, worker):
    key = upload(user, CSV, "people.csv")

    job = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key).job
    job = wait_for_state(job.id, JobState.COMPLETED, timeout=30)

    document = json.loads(storage.read_bytes(storage.output_bucket(), storage.output_key(job.id, "result.json"),
                                             1024 * 1024))
    assert document["result"]["rows"] == 2
    assert document["job_id"] == str(job.id)
    assert job.result["rows"] == 2
    assert job.attempts == 1
    assert [(e.from_state, e.to_state) for e in job.events.all()] == [
        ("", "CREATED"), ("CREATED", "QUEUED"), ("QUEUED", "PROCESSING"), ("PROCESSING", "COMPLETED")]


def test_a_worker_pool_process_runs_jobs_without_the_api_or_the_root_urlconf(user, upload, worker):
    """The worker runs Django's system checks at start, on its own URLconf (the web pages'
    alone, which the result link is reversed through): its pool processes load none of the
    API's URLs and views, drf-spectacular or the root URLconf (the worker's memory budget)."""
    key = upload(user, CSV, "people.csv")

    job = job_create(owner=user, job_type="TEST_MODULES", input_key=key).job
    job = wait_for_state(job.id, JobState.COMPLETED, timeout=30)

    assert job.result == {"loaded": []}


def test_bad_input_fails_at_once_with_a_message_and_no_retry(user, upload, worker):
    key = upload(user, b'name,age\n"unterminated,1\n', "broken.csv")

    job = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key).job
    job = wait_for_state(job.id, JobState.FAILED, timeout=30)

    assert job.attempts == 1
    assert "line 2" in job.error_message
    assert not job.events.filter(to_state=JobState.RETRYING).exists()
    with pytest.raises(storage.ObjectNotFound):
        storage.head(storage.output_bucket(), storage.output_key(job.id, "result.json"))


def test_a_running_job_stops_at_the_next_chunk_when_cancelled(user, upload, worker):
    key = upload(user, b"x" * (64 * 1024 * 50), "long.bin")
    job = job_create(owner=user, job_type="TEST_SLOW", input_key=key, params={"chunk_delay": 0.1}).job
    wait_for_state(job.id, JobState.PROCESSING, timeout=30)

    job_cancel(job=job, actor="user:test")
    job = wait_for_state(job.id, JobState.CANCELLED, timeout=10)

    assert job.progress_bytes < 64 * 1024 * 50
    with pytest.raises(storage.ObjectNotFound):
        storage.head(storage.output_bucket(), storage.output_key(job.id, "result.json"))


def test_the_celery_task_result_is_recorded_and_linked_from_the_job(user, upload, worker):
    from django_celery_results.models import TaskResult

    key = upload(user, CSV, "people.csv")
    job = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key).job
    job = wait_for_state(job.id, JobState.COMPLETED, timeout=30)

    result = wait_until(lambda: TaskResult.objects.filter(task_id=job.celery_task_id).first(), timeout=10,
                        what="the job's TaskResult")
    assert result.status == "SUCCESS"
    assert result.task_name == "jobs.run_job"
    assert job.celery_task_id in job.task_ids


def test_an_unknown_job_type_or_a_foreign_object_is_refused_before_anything_is_queued(user, other_user, upload):
    key = upload(other_user, CSV, "theirs.csv")

    with pytest.raises(JobError, match="Unknown job type 'NOPE'"):
        job_create(owner=user, job_type="NOPE", input_key=upload(user, CSV))
    with pytest.raises(JobError, match="input object not found") as excinfo:
        job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key)
    assert excinfo.value.status == 404
    with pytest.raises(JobError, match="Invalid parameters"):
        job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=upload(user, CSV), params={"x": 1})
    from jobs.models import Job

    assert not Job.objects.exists()


def test_the_same_idempotency_key_returns_the_same_job_and_a_different_body_is_a_conflict(user, upload):
    key = upload(user, CSV)
    first = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key, idempotency_key="k1")
    again = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key, idempotency_key="k1")

    assert (first.created, again.created, again.job.id) == (True, False, first.job.id)
    with pytest.raises(JobError) as excinfo:
        job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key, idempotency_key="k1",
                            params={"has_header": False})
    assert excinfo.value.status == 409
