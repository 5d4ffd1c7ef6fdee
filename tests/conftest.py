"""Shared fixtures: users, uploaded objects, and real Celery worker/beat processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

import storage
from devstack.servers import die_with_parent
from tests.support.deadlines import within
from tests.support.processes import terminate

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def buckets(django_db_setup):
    storage.ensure_buckets()


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    counter = iter(range(1, 10**6))

    def make(username: str | None = None, *, staff: bool = False, password: str = "pw-for-tests-123"):
        User = get_user_model()
        name = username or f"user{next(counter)}"
        return User.objects.create_user(username=name, password=password, is_staff=staff, is_superuser=staff)

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("mallory")


@pytest.fixture
def staff_user(make_user):
    return make_user("operator", staff=True)


@pytest.fixture
def upload():
    """Puts bytes into the input bucket under the owner's upload prefix; returns the key."""

    def put(owner, data: bytes, name: str = "input.csv") -> str:
        key = storage.upload_key(owner.pk, name)
        storage.put_bytes(storage.input_bucket(), key, data, "application/octet-stream")
        return key

    return put


WEB_SETTINGS = {"DJANGO_SETTINGS_MODULE": "jobplatform.settings.web"}
WORKER_SETTINGS = {"DJANGO_SETTINGS_MODULE": "jobplatform.settings.worker"}


def subprocess_env() -> dict:
    """The environment for a worker/beat/web child: the same servers, the test database."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    env["DATABASE_URL"] = f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class CeleryProcess:
    """A real `celery worker` or `celery beat` process."""

    def __init__(self, kind: str, log_dir: Path, *, concurrency: int = 2, queues: str = "jobs,maintenance",
                 name: str = "worker", extra_env: dict | None = None):
        self.kind, self.concurrency, self.queues, self.name = kind, concurrency, queues, name
        self.log = log_dir / f"{name}-{kind}-{time.monotonic_ns()}.log"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.node = f"{name}-{time.monotonic_ns()}"  # the worker's name, before "@host"

    def start(self, wait: bool = True) -> CeleryProcess:
        if self.kind == "worker":
            args = ["worker", "-Q", self.queues, "--concurrency", str(self.concurrency), "--loglevel", "INFO",
                    "-n", f"{self.node}@%h", "--without-gossip", "--without-mingle",
                    "--prefetch-multiplier", "1"]
        else:
            args = ["beat", "--loglevel", "INFO", "-s", str(self.log.with_suffix(".schedule"))]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "jobplatform", *args],
                                         env={**subprocess_env(), **WORKER_SETTINGS, **self.extra_env},
                                         cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=die_with_parent(signal.SIGKILL))
        if self.kind == "worker" and wait:
            self._wait_for_log(b"ready.", within(60))
        return self

    def is_ready(self) -> bool:
        return self.kind == "worker" and self.proc.poll() is None and b"ready." in self.log.read_bytes()

    def _wait_for_log(self, marker: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log.read_bytes():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery {self.kind} exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"celery {self.kind} not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def child_pids(self) -> list[int]:
        import psutil

        return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kills the whole process group at once, like a machine losing the worker."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class WebServer:
    """`uvicorn jobplatform.asgi:application` on a free port, against the test database.

    The streaming upload endpoints and the WebSocket routes bypass Django's request
    handling, so only a real ASGI server shows how they behave.
    """

    def __init__(self, log_dir: Path, extra_env: dict | None = None):
        from devstack.servers import free_port, wait_for_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"uvicorn-{self.port}.log"
        env = {**subprocess_env(), **WEB_SETTINGS, "DJANGO_DEBUG": "0", **(extra_env or {})}
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by Playwright's fixtures; never for a server
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "jobplatform.asgi:application", "--host", "127.0.0.1", "--port",
                 str(self.port), "--no-access-log"],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGKILL))
        try:
            wait_for_port(self.port, within(60), self.proc, "uvicorn")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {self.log.read_text()[-3000:]}") from None

    def client(self, **kwargs):
        import httpx

        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def stop(self) -> None:
        terminate(self.proc)


@pytest.fixture
def start_web_server(tmp_path, transactional_db):
    """Factory for Uvicorn servers (optionally with their own settings); stopped after the test."""
    started: list[WebServer] = []

    def start(**env: str) -> WebServer:
        started.append(WebServer(tmp_path, env))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def celery_process(tmp_path, transactional_db):
    """Factory for worker/beat processes; all are stopped at the end of the test."""
    started: list[CeleryProcess] = []

    def start(kind: str = "worker", wait: bool = True, **kwargs) -> CeleryProcess:
        process = CeleryProcess(kind, tmp_path, **kwargs).start(wait=wait)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    if started:
        purge_queues()


def purge_queues() -> None:
    """Empties the brokers' queues: the session's (Redis) and any RabbitMQ vhost its workers
    were pointed at. A test that leaves messages behind (the chaos test leaves hundreds of
    the sweeper's duplicates) would make the next test's worker work through them first;
    the database rows they name are gone with that test anyway."""
    from kombu import Connection

    from tests.support.rabbitmq import SESSION_BROKERS

    queues = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    brokers = {settings.CELERY_BROKER_URL: settings.CELERY_BROKER_TRANSPORT_OPTIONS,
               **{url: {} for url in SESSION_BROKERS}}
    for url, options in brokers.items():
        with Connection(url, transport_options=options) as connection:
            connection.ensure_connection(max_retries=3)
            for queue in queues:
                # A channel each: on RabbitMQ, purging a queue never declared closes the channel.
                with connection.channel() as channel, contextlib.suppress(*connection.channel_errors):
                    channel.queue_purge(queue)


@pytest.fixture
def worker(celery_process):
    return celery_process("worker")


@pytest.fixture
def beat(celery_process):
    return celery_process("beat")


def wait_until(condition, timeout: float = 10.0, what: str = "condition"):
    """Polls `condition` until it returns something truthy, which it returns."""
    deadline = time.monotonic() + within(timeout)
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {within(timeout)}s")


def wait_for_state(job_id, states, timeout: float = 60.0):
    """Polls the database until the job is in one of `states`; returns the job."""
    from jobs.models import Job

    if isinstance(states, str):
        states = {states}
    deadline = time.monotonic() + within(timeout)
    job = None
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.state in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} is {job.state if job else '?'} after {within(timeout)}s, wanted {states}; "
                         f"error={job.error_message if job else ''!r}")
