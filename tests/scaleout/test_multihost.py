"""Workers on two hosts share the work, and one host cut off loses no job and doubles none.

Hosts are Linux network namespaces (tests/scaleout/netns.py): PostgreSQL, Redis and
SeaweedFS S3 in a services namespace (devstack's servers bound to its 10.x address), one
real Celery worker in each of two worker namespaces, the sweeper beside the services. The
test process reaches them only through `ip netns exec`: the agent (tests/scaleout/agent.py)
creates the jobs and reports on them from inside the services namespace.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devstack.servers import die_with_parent
from tests.scaleout.netns import Hosts, Unavailable
from tests.support.deadlines import within

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
JOBS = 12
# The session's own servers, which the namespaces cannot reach anyway, are not theirs.
SESSION_SERVICES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID",
                    "S3_SECRET_ACCESS_KEY")


def expected_digest(index: int) -> str:
    """The result of job `index`: its input is made this way by the agent."""
    return hashlib.sha256(hashlib.sha256(str(index).encode()).digest() * 1024).hexdigest()


class Processes:
    """Processes started inside namespaces, each in its own process group, logged to a file."""

    def __init__(self, hosts: Hosts, log_dir: Path, env: dict) -> None:
        self.hosts, self.log_dir, self.env = hosts, log_dir, env
        self.started: dict[str, subprocess.Popen] = {}

    def spawn(self, name: str, namespace: str, args: list[str], **popen) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            popen.setdefault("stdout", log)
            proc = subprocess.Popen(self.hosts.exec_args(namespace, args), env=self.env, cwd=ROOT,
                                    stderr=log, start_new_session=True,
                                    preexec_fn=die_with_parent(signal.SIGKILL), **popen)
        self.started[name] = proc
        return proc

    def run(self, namespace: str, args: list[str], timeout: float) -> str:
        done = subprocess.run(self.hosts.exec_args(namespace, args), env=self.env, cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, f"{args} in {namespace}: {done.stderr[-3000:]}"
        return done.stdout

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.started.get(name)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop_all(self) -> None:
        for name in reversed(list(self.started)):
            self.stop(name)


class Watch:
    """Reads the agent's JSON lines in the background; `latest` is the last report."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.latest: dict = {}
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            report = json.loads(line)
            if "error" not in report:
                self.latest = report

    def until(self, condition, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + within(timeout)
        while time.monotonic() < deadline:
            if self.latest and condition(self.latest):
                return self.latest
            time.sleep(0.2)
        raise AssertionError(f"{what} not within {within(timeout)}s; last report: {self.latest}")


@pytest.fixture
def hosts():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (the multi-host test runs as root in CI)")
    try:
        made = Hosts(["a", "b"]).create()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def processes(hosts, tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in SESSION_SERVICES}
    env.update({"PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "jobplatform.settings.worker",
                "S3_KEY_PREFIX": f"multihost-{hosts.tag}"})
    started = Processes(hosts, tmp_path, env)
    try:
        yield started
    finally:
        started.stop_all()


def start_services(hosts: Hosts, processes: Processes, tmp_path: Path) -> None:
    services_dir = tmp_path / "services"
    proc = processes.spawn("services", hosts.services, [sys.executable, "-m", "tests.scaleout.services",
                                                        "--host", hosts.services_address, "--dir", str(services_dir)])
    deadline = time.monotonic() + within(60)
    while not (services_dir / "env.json").exists():
        assert proc.poll() is None, f"the services exited: {processes.log('services')}"
        assert time.monotonic() < deadline, f"the services did not start: {processes.log('services')}"
        time.sleep(0.2)
    processes.env.update(json.loads((services_dir / "env.json").read_text()))


def start_worker(hosts: Hosts, processes: Processes, host: str) -> None:
    processes.spawn(f"worker-{host}", hosts.workers[host], [
        sys.executable, "-m", "celery", "-A", "jobplatform", "worker", "-Q", "jobs,maintenance", "--concurrency", "2",
        "--prefetch-multiplier", "1", "--loglevel", "INFO", "-n", f"host-{host}-{hosts.tag}@%h",
        "--without-gossip", "--without-mingle"])


def wait_ready(processes: Processes, host: str) -> None:
    deadline = time.monotonic() + within(60)
    while "ready." not in processes.log(f"worker-{host}"):
        assert processes.started[f"worker-{host}"].poll() is None, processes.log(f"worker-{host}")
        assert time.monotonic() < deadline, f"worker on host {host} not ready: {processes.log(f'worker-{host}')}"
        time.sleep(0.2)


def on_host(worker: str, host: str, tag: str) -> bool:
    """Whether a worker name (a job's holder, or an event's actor "worker:<name>") is on `host`."""
    return worker.removeprefix("worker:").startswith(f"host-{host}-{tag}@")


def test_workers_on_two_hosts_share_the_jobs_and_one_cut_off_loses_none(hosts, processes, tmp_path):
    start_services(hosts, processes, tmp_path)
    agent = [sys.executable, "-m", "tests.scaleout.agent"]
    processes.run(hosts.services, [*agent, "prepare"], timeout=within(60))
    processes.spawn("sweeper", hosts.services, [sys.executable, "manage.py", "sweep", "--loop"])
    for host in ("a", "b"):
        start_worker(hosts, processes, host)
    for host in ("a", "b"):
        wait_ready(processes, host)

    ids = json.loads(processes.run(hosts.services, [*agent, "create", str(JOBS)], timeout=within(60)))["ids"]
    watch = Watch(processes.spawn("watch", hosts.services, [*agent, "watch", *ids], stdout=subprocess.PIPE,
                                  text=True))
    tag = hosts.tag

    # Host a has finished a job and is in the middle of others: its link goes down.
    before = watch.until(lambda jobs: any(on_host(by, "a", tag) for job in jobs.values() for by in job["completed_by"])
                         and any(job["state"] == "PROCESSING" and on_host(job["worker"], "a", tag)
                                 for job in jobs.values()), 60, "host a completing one job and running another")
    cut_off = [job_id for job_id, job in before.items()
               if job["state"] == "PROCESSING" and on_host(job["worker"], "a", tag)]
    hosts.cut("a")

    final = watch.until(lambda jobs: len(jobs) == JOBS and all(job["state"] == "COMPLETED" for job in jobs.values()),
                        120, f"every job COMPLETED with host a cut off (worker b: {processes.log('worker-b')[-500:]})")
    processes.stop("worker-a", signal.SIGKILL)  # cut off, it could not hand anything back anyway
    final = json.loads(processes.run(hosts.services, [*agent, "report", *ids], timeout=within(60)))

    for index, job_id in enumerate(ids):
        job = final[job_id]
        assert len(job["completed_by"]) == 1, f"job {job_id} completed {len(job['completed_by'])} times"
        assert job["result_sha256"] == expected_digest(index), f"job {job_id}: result.json missing or wrong"
    completed_by = [final[job_id]["completed_by"][0] for job_id in ids]
    assert any(on_host(by, "a", tag) for by in completed_by), completed_by
    assert any(on_host(by, "b", tag) for by in completed_by), completed_by
    # The jobs host a was running when it was cut off were finished by host b.
    assert cut_off and all(on_host(final[job_id]["completed_by"][0], "b", tag) for job_id in cut_off)
    print(f"\nmultihost: {JOBS} jobs, host a completed {sum(on_host(by, 'a', tag) for by in completed_by)}, "
          f"host b {sum(on_host(by, 'b', tag) for by in completed_by)}; "
          f"{len(cut_off)} cut off on host a finished by host b")
