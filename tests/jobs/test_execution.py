"""A job runs end to end on a real worker: create, queue, claim, process, result in S3."""

import json

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

import storage
from jobs.errors import JobError
from jobs.isolation import results
from jobs.models import JobState
from jobs.services.actions import job_cancel
from jobs.services.create import job_create
from jobs.storable import unstorable_reason
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


def test_the_processor_runs_in_a_child_of_the_pool_process_that_serves_job_after_job(user, upload, celery_process):
    """One long-lived child per pool process: a tiny job pays two pipe messages, not a start."""
    worker = celery_process("worker", concurrency=1)
    pids = []
    for _ in range(3):
        job = job_create(owner=user, job_type="TEST_SLOW", input_key=upload(user, b"x" * 100),
                         params={"chunk_delay": 0}).job
        pids.append(wait_for_state(job.id, JobState.COMPLETED, timeout=30).result["pid"])

    import psutil

    pool_process = psutil.Process(worker.proc.pid).children()[0]
    assert len(set(pids)) == 1
    assert pids[0] in [child.pid for child in pool_process.children()]


def test_a_child_that_went_over_a_limit_is_replaced_for_the_next_job(user, upload, celery_process):
    celery_process("worker", concurrency=1, extra_env={"JOB_MEMORY_LIMIT_MB": "256"})
    first = job_create(owner=user, job_type="TEST_SLOW", input_key=upload(user, b"x"), params={"chunk_delay": 0}).job
    before = wait_for_state(first.id, JobState.COMPLETED, timeout=30).result["pid"]
    bomb = job_create(owner=user, job_type="TEST_ALLOCATE", input_key=upload(user, b"x"), params={"mib": 2048}).job
    assert wait_for_state(bomb.id, JobState.FAILED, timeout=30).error_code == "resource_limit"

    after = job_create(owner=user, job_type="TEST_SLOW", input_key=upload(user, b"x"), params={"chunk_delay": 0}).job
    assert wait_for_state(after.id, JobState.COMPLETED, timeout=30).result["pid"] != before


storable = st.characters(codec="utf-8", exclude_characters="\x00")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(storable, max_size=20)
    | st.text(storable, min_size=4000, max_size=6000),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(storable, max_size=8), children,
                                                                       max_size=5),
    max_leaves=30)


@examples(max_examples=50, deadline=None)
@given(value=json_values)
def test_a_bounded_result_has_no_long_string_and_fits_the_cap(value):
    from django.conf import settings

    bounded = results.bounded(value)
    text = json.dumps(bounded)
    marker = len(results.TRUNCATED.format(n=10**9))
    assert len(text.encode()) <= settings.JOB_RESULT_MAX_BYTES
    assert all(len(s) <= settings.JOB_RESULT_MAX_STRING_CHARS + marker for s in strings_in(bounded))


@examples(max_examples=50, deadline=None)
@given(value=json_values, bad=st.sampled_from(["\x00", "\ud800", "\udfff"]))
def test_a_value_the_database_cannot_store_is_named_wherever_it_is(value, bad):
    assert unstorable_reason(value, "result") is None
    assert unstorable_reason({"ok": value, "bad": [f"x{bad}y"]}, "result") == (
        "result.bad[0] contains " + ("a NUL character (U+0000)" if bad == "\x00" else "a lone UTF-16 surrogate"))


def strings_in(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
