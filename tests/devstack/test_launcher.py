"""`make run` supervises what it starts: crashed processes come back, Ctrl-C stops everything.

Each test runs the real launcher (`python -m devstack.launcher`) as a subprocess, on a free
port with a temporary data directory, so it starts its own PostgreSQL, Redis and S3 servers
besides the test session's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from devstack.servers import free_port
from tests.support.deadlines import within

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The test session's servers and keys: the launcher must start its own.
SESSION_ONLY = ("DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY",
                "S3_KEY_PREFIX", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG", "JOBPLATFORM_ENV_FILE",
                "WEED_GRPC_CA", "WEED_GRPC_CLIENT_CERT", "WEED_GRPC_CLIENT_KEY")


class Launcher:
    def __init__(self, tmp_path: Path):
        self.data = tmp_path / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out, self.err = tmp_path / "launcher.out", tmp_path / "launcher.err"
        self.env = {k: v for k, v in os.environ.items() if k not in SESSION_ONLY}
        self.env.update(JOBPLATFORM_DATA_DIR=str(self.data), PORT=str(self.port), WORKER_CONCURRENCY="1",
                        PYTHONUNBUFFERED="1")
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            # Own session, like a terminal's foreground job: the SIGINT below reaches it alone.
            self.proc = subprocess.Popen([sys.executable, "-m", "devstack.launcher"], env=self.env, cwd=ROOT,
                                         stdout=out, stderr=err, start_new_session=True)
        self.token = ""

    def console(self) -> str:
        return self.out.read_text(errors="replace")

    def terminal(self) -> str:
        """Everything a terminal would show: the launcher's lines and its children's output."""
        return self.console() + self.err.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        """Waits for /readyz 200 (every server answers)."""
        deadline = time.monotonic() + within(timeout)
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"launcher exited: {self.console()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=3).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"/readyz not 200 within {within(timeout)}s: {self.console()[-3000:]}")

    def api(self) -> httpx.Client:
        if not self.token:
            # manage.py finds the launcher's stack through the runtime.env it writes.
            created = subprocess.run([sys.executable, "manage.py", "drf_create_token", "admin"], cwd=ROOT,
                                     env={**self.env, "JOBPLATFORM_ENV_FILE": str(self.data / "runtime.env")},
                                     capture_output=True, text=True, check=True, timeout=within(30))
            self.token = created.stdout.split()[2]
        return httpx.Client(base_url=f"{self.url}/api/v1", headers={"Authorization": f"Token {self.token}"},
                            timeout=30)

    def completes_a_job(self) -> str:
        """Uploads a CSV through the API, creates a job on it and waits for COMPLETED; returns its id."""
        with self.api() as api:
            uploaded = api.put("/uploads/rows.csv", content=b"a,b\n1,2\n3,4\n")
            assert uploaded.status_code == 201, uploaded.text
            created = api.post("/jobs/", json={"job_type": "CSV_ROW_COUNT",
                                               "input_object_key": uploaded.json()["object_key"]})
            assert created.status_code == 201, created.text
            deadline = time.monotonic() + within(60)
            while time.monotonic() < deadline:
                job = api.get(f"/jobs/{created.json()['id']}/").json()
                if job["state"] == "COMPLETED":
                    assert job["result"]["rows"] == 2
                    return job["id"]
                time.sleep(0.3)
        raise AssertionError(f"job not COMPLETED within {within(60)}s: {job}")

    def starts_a_slow_job(self) -> str:
        """A TEST_SLOW job (4 chunks, 0.5 s apart), returned once a worker runs it."""
        with self.api() as api:
            key = api.put("/uploads/slow.bin", content=bytes(4 * 65536)).json()["object_key"]
            job = api.post("/jobs/", json={"job_type": "TEST_SLOW", "input_object_key": key,
                                           "params": {"chunk_delay": 0.5, "chunk_size": 65536}}).json()
            deadline = time.monotonic() + within(30)
            while api.get(f"/jobs/{job['id']}/").json()["state"] != "PROCESSING":
                assert time.monotonic() < deadline, "the slow job did not start"
                time.sleep(0.1)
        return job["id"]

    def child(self, matches) -> psutil.Process:
        return next(p for p in psutil.Process(self.proc.pid).children() if matches(p))

    def wait_for_new_child(self, matches, old_pid: int, timeout: float = 30) -> psutil.Process:
        deadline = time.monotonic() + within(timeout)
        while time.monotonic() < deadline:
            found = [p for p in psutil.Process(self.proc.pid).children() if p.pid != old_pid and matches(p)]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no replacement process within {within(timeout)}s: {self.console()[-3000:]}")

    def interrupt(self) -> None:
        """Ctrl-C, as a terminal sends it: SIGINT to the launcher's process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.interrupt()
            try:
                self.proc.wait(within(30))
            except subprocess.TimeoutExpired:
                self.proc.kill()  # its children get their death signal
                self.proc.wait()


def is_worker(process: psutil.Process) -> bool:
    return "worker" in process.cmdline() and "celery" in process.cmdline()


def is_postmaster(process: psutil.Process) -> bool:
    return process.name() == "postgres"


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    running = Launcher(tmp_path_factory.mktemp("launcher"))
    running.wait_ready(timeout=90)
    yield running
    running.kill()


@pytest.fixture
def fresh_launcher(tmp_path):
    running = Launcher(tmp_path)
    yield running
    running.kill()


def test_the_console_shows_the_urls_the_sign_in_and_job_events_but_not_periodic_maintenance(launcher):
    job_id = launcher.completes_a_job()
    time.sleep(3)  # three sweeps (one a second) that must not show
    console, terminal = launcher.console(), launcher.terminal()
    assert f"web:    {launcher.url}/" in console and f"api:    {launcher.url}/api/v1/" in console
    assert f"password in {launcher.data / 'admin-password'}" in console
    # One line per transition of the job, from the web (queued) and the worker (claimed, completed).
    for move in ("from=CREATED to=QUEUED", "from=QUEUED to=PROCESSING", "from=PROCESSING to=COMPLETED"):
        assert len([line for line in terminal.splitlines() if job_id in line and move in line]) == 1, move
    assert "Sending due task" not in terminal and "jobs.sweep[" not in terminal  # beat's and the worker's
    assert "-------------- worker@" not in terminal  # no start-up banner


def test_make_run_restarts_a_killed_worker_and_keeps_serving(launcher):
    worker = launcher.child(is_worker)
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool, like a machine losing them

    replacement = launcher.wait_for_new_child(is_worker, worker.pid)

    assert replacement.ppid() == launcher.proc.pid  # still in the launcher's process tree
    assert "worker killed by SIGKILL; restarting it" in launcher.console()
    launcher.wait_ready()
    launcher.completes_a_job()


def test_make_run_recovers_a_killed_postgresql_and_keeps_serving(launcher):
    postmaster = launcher.child(is_postmaster)
    postmaster.kill()  # SIGKILL: a stale postmaster.pid, backends left to notice on their own

    replacement = launcher.wait_for_new_child(is_postmaster, postmaster.pid)

    assert replacement.ppid() == launcher.proc.pid
    assert "PostgreSQL killed by SIGKILL; restarting it" in launcher.console()
    launcher.wait_ready()
    launcher.completes_a_job()


def test_ctrl_c_stops_every_process_make_run_started_with_exit_code_0(fresh_launcher):
    fresh_launcher.wait_ready(timeout=90)
    # A completed job: the worker has finished starting (a worker stopped while it boots
    # prints Celery's own traceback).
    fresh_launcher.completes_a_job()
    # A job running when Ctrl-C comes: the worker's warm shutdown finishes it (about 2 s).
    running = fresh_launcher.starts_a_slow_job()
    started = psutil.Process(fresh_launcher.proc.pid).children(recursive=True)
    assert any(map(is_worker, started)) and any(map(is_postmaster, started))
    stderr_before = fresh_launcher.err.stat().st_size

    fresh_launcher.interrupt()

    assert fresh_launcher.proc.wait(within(60)) == 0
    still_running = []
    for process in started:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                still_running.append(process)
        except psutil.NoSuchProcess:
            pass
    assert still_running == []
    after = fresh_launcher.err.read_bytes()[stderr_before:].decode(errors="replace")
    assert "Traceback" not in after and "WorkerLostError" not in after
    assert f"job_id={running} from=PROCESSING to=COMPLETED" in after
    assert fresh_launcher.console().rstrip().endswith("stopped.")
