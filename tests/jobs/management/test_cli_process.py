"""`manage.py submit` and `manage.py watch` as a shell runs them: real processes, real pipes,
real exit codes and a real Ctrl-C (SIGINT), against the test session's servers."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

import storage
from jobs.models import Job, JobState
from storage import multipart
from tests.conftest import ROOT, subprocess_env, wait_until
from tests.support.deadlines import within

CSV = b"name,size\na,1\nb,2\nc,3\n"


def manage(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=within(timeout), check=False)


def start(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env={**subprocess_env(), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def open_uploads(user) -> list[dict]:
    return multipart.list_open(storage.input_bucket(), storage.owner_upload_prefix(user.pk))


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes(CSV)
    return path


@pytest.fixture
def admin_user(make_user):
    return make_user("root", staff=True)


def test_the_readme_names_only_sample_files_the_repository_ships():
    named = set(re.findall(r"examples/[\w.-]+\.\w+", (ROOT / "README.md").read_text()))
    assert named and all((ROOT / name).is_file() for name in named), named


@pytest.mark.django_db(transaction=True)
def test_submit_wait_piped_into_json_tool_succeeds(worker, admin_user):
    # The README's example, as a shell runs it; pipefail: the pipeline fails if either side does.
    done = subprocess.run(["bash", "-o", "pipefail", "-c",
                           f"{sys.executable} manage.py submit examples/people.csv --type CSV_ROW_COUNT --wait"
                           f" --timeout 60 | {sys.executable} -m json.tool"],
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=within(120),
                          check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 5
    # Progress on stderr, and no INFO log lines among it at the default verbosity.
    assert "COMPLETED" in done.stderr and " INFO " not in done.stderr

    job = Job.objects.get()
    watched = manage("watch", str(job.id))
    assert watched.returncode == 0 and json.loads(watched.stdout) == job.result


@pytest.mark.django_db(transaction=True)
def test_exit_codes_of_a_wrong_command_line_and_of_errors(admin_user, csv_file):
    assert manage("submit", str(csv_file)).returncode == 2  # argparse: --type missing
    unknown = manage("submit", str(csv_file), "--type", "NOPE")
    assert unknown.returncode == 2 and "Unknown job type 'NOPE'" in unknown.stderr
    missing = manage("submit", "nope.csv", "--type", "CSV_ROW_COUNT")
    assert missing.returncode == 1 and "nope.csv: no such file" in missing.stderr
    assert manage("watch", "not-a-uuid").returncode == 2
    assert manage("watch", "00000000-0000-0000-0000-000000000000").returncode == 1
    refused = manage("requeue_dead", "--job-type", "NOPE")
    assert refused.returncode == 2 and "known types: " in refused.stderr and "CSV_ROW_COUNT" in refused.stderr
    assert "Traceback" not in unknown.stderr + missing.stderr + refused.stderr
    assert Job.objects.count() == 0 and not open_uploads(admin_user)


@pytest.mark.django_db(transaction=True)
def test_verbosity_2_shows_the_log_lines_the_default_hides(admin_user, csv_file):
    quiet = manage("submit", str(csv_file), "--type", "CSV_ROW_COUNT")
    chatty = manage("submit", str(csv_file), "--type", "CSV_ROW_COUNT", "-v", "2")
    assert quiet.returncode == chatty.returncode == 0
    assert "job.created" not in quiet.stderr and "job.created" in chatty.stderr
    assert json.loads(quiet.stdout)["state"] in {JobState.CREATED, JobState.QUEUED}


@pytest.mark.django_db(transaction=True)
def test_ctrl_c_during_the_upload_aborts_it_in_one_line_and_leaves_no_multipart_upload(admin_user, tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "wb") as out:
        out.truncate(2 * 1024**3)  # sparse: reading it costs no disk, sending it takes seconds
    proc = start("submit", str(big), "--type", "CSV_ROW_COUNT", UPLOAD_PART_SIZE=str(5 * 1024**2),
                 UPLOAD_MAX_PARTS_IN_FLIGHT="1")
    try:
        # Ctrl-C once the upload is under way: its multipart upload exists in the bucket.
        wait_until(lambda: open_uploads(admin_user) or proc.poll() is not None, timeout=60,
                   what="an open multipart upload")
        assert proc.poll() is None, "the upload finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=within(60))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert out == ""
    last_lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "upload:" not in line]
    assert last_lines == ["CommandError: interrupted: upload aborted, no job created"]
    assert open_uploads(admin_user) == []
    assert storage.list_keys(storage.input_bucket(), storage.owner_upload_prefix(admin_user.pk)) == []
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_ctrl_c_during_wait_leaves_the_job_running_and_says_how_to_follow_it(admin_user, csv_file):
    # No worker: the job stays QUEUED while the command waits for it.
    proc = start("submit", str(csv_file), "--type", "CSV_ROW_COUNT", "--wait")
    try:
        job = wait_until(lambda: Job.objects.filter(state=JobState.QUEUED).first(), timeout=60, what="a queued job")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=within(30))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and out == ""
    # Whether the SIGINT came before or after the upload's last step, the job goes on.
    assert "keeps running; follow it with: manage.py watch " + str(job.id) in err
    assert "Traceback" not in err
    assert Job.objects.get().state == JobState.QUEUED
