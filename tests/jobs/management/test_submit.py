"""manage.py submit FILE --type T [--param k=v] [--owner U] [--wait] [--timeout S]."""

from __future__ import annotations

import json
import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

import storage
from jobs.models import Job, JobState
from jobs.services.actions import job_cancel
from tests.conftest import wait_for_state, wait_until

CSV = b"name,size\na,1\nb,2\nc,3\n"


def submit(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("submit", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def uploads_of(user) -> list[str]:
    return storage.list_keys(storage.input_bucket(), storage.owner_upload_prefix(user.pk))


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes(CSV)
    return path


@pytest.fixture
def admin_user(make_user):
    return make_user("root", staff=True)  # staff=True makes a superuser too


@pytest.mark.django_db
class TestRefusesBeforeUploading:
    def test_a_missing_file(self, admin_user, tmp_path):
        with pytest.raises(CommandError, match="no such file"):
            submit(str(tmp_path / "nope.csv"), "--type", "CSV_ROW_COUNT")
        assert uploads_of(admin_user) == []

    def test_a_directory(self, admin_user, tmp_path):
        with pytest.raises(CommandError, match="not a regular file"):
            submit(str(tmp_path), "--type", "CSV_ROW_COUNT")

    def test_an_unknown_type(self, admin_user, csv_file):
        with pytest.raises(CommandError, match="Unknown job type 'NOPE'"):
            submit(str(csv_file), "--type", "NOPE")
        assert uploads_of(admin_user) == []

    @pytest.mark.parametrize("param, message", [("delimiter=;;", "delimiter"), ("colour=red", "unknown parameter"),
                                                ("has_header", "expected NAME=VALUE"), ("=x", "NAME=VALUE"),
                                                ("has_header=maybe", "has_header")])
    def test_bad_params(self, admin_user, csv_file, param, message):
        with pytest.raises(CommandError, match=message):
            submit(str(csv_file), "--type", "CSV_ROW_COUNT", "--param", param)
        assert uploads_of(admin_user) == [] and not Job.objects.exists()

    def test_no_owner_and_no_superuser(self, user, csv_file):
        with pytest.raises(CommandError, match="no superuser exists"):
            submit(str(csv_file), "--type", "CSV_ROW_COUNT")
        assert uploads_of(user) == []

    def test_an_unknown_owner(self, admin_user, csv_file):
        with pytest.raises(CommandError, match="no user named 'ghost'"):
            submit(str(csv_file), "--type", "CSV_ROW_COUNT", "--owner", "ghost")

    def test_a_file_over_the_upload_limit(self, admin_user, csv_file, settings):
        settings.UPLOAD_MAX_BYTES = 10
        with pytest.raises(CommandError, match="over the upload limit"):
            submit(str(csv_file), "--type", "CSV_ROW_COUNT")
        assert uploads_of(admin_user) == []


@pytest.mark.django_db
def test_submit_uploads_the_file_and_creates_the_job_for_the_first_superuser(admin_user, make_user, csv_file):
    make_user("second-admin", staff=True)
    out, err = submit(str(csv_file), "--type", "CSV_ROW_COUNT", "--param", "has_header=false",
                      "--param", "delimiter=,")
    job = Job.objects.get()
    assert job.owner == admin_user and job.input_name == "people.csv" and job.input_size == len(CSV)
    assert job.params["has_header"] is False and job.params["delimiter"] == ","  # JSON false, plain string
    assert storage.read_bytes(job.input_bucket, job.input_key, 1000) == CSV
    # stdout: the job alone, as JSON; the sentence for people goes to stderr.
    assert json.loads(out) == {"id": str(job.id), "job_type": "CSV_ROW_COUNT", "state": job.state,
                               "input_name": "people.csv", "input_size": len(CSV)}
    assert f"job {job.id} created: CSV_ROW_COUNT on people.csv" in err


@pytest.mark.django_db
def test_submit_for_a_named_owner(user, csv_file):
    submit(str(csv_file), "--type", "CSV_ROW_COUNT", "--owner", user.username)
    assert Job.objects.get().owner == user


@pytest.mark.django_db
def test_submit_wait_exits_6_when_the_job_does_not_finish_in_time(admin_user, csv_file):
    # No worker runs in this test, so the job cannot finish.
    with pytest.raises(CommandError, match="still") as failure:
        submit(str(csv_file), "--type", "CSV_ROW_COUNT", "--wait", "--timeout", "0.5")
    assert failure.value.returncode == 6
    assert f"manage.py watch {Job.objects.get().id}" in str(failure.value)


@pytest.mark.django_db(transaction=True)
def test_submit_wait_end_to_end_prints_the_result_alone_and_exits_0(worker, admin_user, csv_file):
    out, err = submit(str(csv_file), "--type", "CSV_ROW_COUNT", "--wait", "--timeout", "60")
    job = Job.objects.get()
    assert job.state == JobState.COMPLETED
    assert json.loads(out) == job.result and job.result["rows"] == 3
    assert "upload" in err and "job" in err and "COMPLETED" in err  # the progress bars


@pytest.mark.django_db(transaction=True)
def test_submit_wait_exits_3_when_the_job_fails(worker, admin_user, tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_bytes(b'{"a": [1, 2')
    with pytest.raises(CommandError, match="FAILED") as failure:
        submit(str(bad), "--type", "JSON_CANONICALIZE", "--wait", "--timeout", "60")
    assert failure.value.returncode == 3
    assert wait_for_state(Job.objects.get().id, JobState.FAILED, timeout=1).error_message in str(failure.value)


@pytest.mark.django_db(transaction=True)
def test_submit_wait_exits_4_when_the_job_dies(celery_process, admin_user, csv_file):
    # Attempts used up in one go: the worker kills itself, the sweeper finds the expired
    # lease, and with max attempts reached the job is DEAD.
    celery_process("worker", concurrency=1)
    celery_process("beat")
    from django.test import override_settings

    with override_settings(JOB_MAX_ATTEMPTS=1), pytest.raises(CommandError, match="DEAD") as failure:
        submit(str(csv_file), "--type", "TEST_KILL_WORKER", "--wait", "--timeout", "60")
    assert failure.value.returncode == 4


@pytest.mark.django_db(transaction=True)
def test_submit_wait_exits_5_when_the_job_is_cancelled(admin_user, csv_file):
    # No worker: the job waits QUEUED until its owner cancels it from elsewhere.
    def cancel_when_created():
        job = wait_until(lambda: Job.objects.filter(state=JobState.QUEUED).first(), what="a queued job")
        job_cancel(job=job, actor="test")

    canceller = threading.Thread(target=cancel_when_created)
    canceller.start()
    try:
        with pytest.raises(CommandError, match="CANCELLED") as failure:
            submit(str(csv_file), "--type", "CSV_ROW_COUNT", "--wait", "--timeout", "60")
    finally:
        canceller.join()
    assert failure.value.returncode == 5


@pytest.mark.django_db
@pytest.mark.parametrize("args", [["--type", "NOPE"], ["--type", "CSV_ROW_COUNT", "--param", "colour=red"],
                                  ["--type", "CSV_ROW_COUNT", "--owner", "ghost"],
                                  ["--type", "CSV_ROW_COUNT", "--timeout", "0"]])
def test_a_wrong_command_line_is_exit_code_2(admin_user, csv_file, args):
    with pytest.raises(CommandError) as failure:
        submit(str(csv_file), *args)
    assert failure.value.returncode == 2

