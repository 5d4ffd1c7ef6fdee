"""A whole platform for a benchmark run: embedded servers, Uvicorn, Celery workers.

Every bench script starts its own stack on free ports in a temporary directory, so the
numbers it prints compare the platform with a baseline measured in the same run, on the
same servers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h11

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.servers import Stack, die_with_parent, free_port, wait_for_port


class Platform:
    def __init__(self, *, workers: int = 1, concurrency: int = 2, web: bool = True, beat: bool = True,
                 extra_env: dict | None = None, worker_app: str = "jobplatform"):
        self.base = Path(tempfile.mkdtemp(prefix="jobplatform-bench-"))
        self.stack = Stack(self.base / "services", durable=False)
        self.workers, self.concurrency, self.web, self.beat = workers, concurrency, web, beat
        self.extra_env = extra_env or {}
        self.worker_app = worker_app  # the worker's -A: a bench module can add its own tasks
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Platform:
        env = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "bench-secret", "DJANGO_SECURE_COOKIES": "0",
               "JOBPLATFORM_ENV_FILE": "", "DJANGO_SETTINGS_MODULE": "jobplatform.settings.web",
               "THROTTLE_JOB_CREATE": "1000000/min", "THROTTLE_UPLOAD": "1000000/min", "LOG_LEVEL": "WARNING",
               **self.extra_env}
        for name in ("DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL"):
            os.environ.pop(name, None)
        os.environ.update(env)
        os.environ.update(self.stack.start(os.environ))
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("ensure_buckets", stdout=open(os.devnull, "w"))
        if self.web:
            self.spawn("web", [sys.executable, "-m", "uvicorn", "jobplatform.asgi:application", "--host",
                                "127.0.0.1", "--port", str(self.port), "--no-access-log", "--log-level", "warning"])
            wait_for_port(self.port, 60, self.procs["web"], "uvicorn")
        for i in range(self.workers):
            self.spawn(f"worker{i}", [sys.executable, "-m", "celery", "-A", self.worker_app, "worker", "-Q",
                                       "jobs,maintenance", "--concurrency", str(self.concurrency), "--loglevel",
                                       "WARNING", "-n", f"bench{i}@%h", "--without-gossip", "--without-mingle"],
                        settings="jobplatform.settings.worker")
        if self.beat:
            self.spawn("beat", [sys.executable, "-m", "celery", "-A", "jobplatform", "beat", "--loglevel",
                                 "WARNING", "-s", str(self.base / "beat-schedule")],
                        settings="jobplatform.settings.worker")
        self._wait_for_workers()
        return self

    def spawn(self, name: str, args: list[str], settings: str = "jobplatform.settings.web") -> None:
        with open(self.base / f"{name}.log", "ab") as log:
            env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings}
            self.procs[name] = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True,
                                                preexec_fn=die_with_parent(signal.SIGKILL))

    def _wait_for_workers(self) -> None:
        from jobplatform.celery import app

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.workers:
            replies = app.control.ping(timeout=1.0) or []
            if len(replies) >= self.workers:
                return
        if self.workers:
            raise RuntimeError("celery workers did not answer within 60s")

    def user_and_token(self, username: str = "bench") -> tuple[object, str]:
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        user, _ = get_user_model().objects.get_or_create(username=username)
        user.set_password("bench-password-123")
        user.save()
        token, _ = Token.objects.get_or_create(user=user)
        return user, token.key

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def __exit__(self, *exc) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        from django.db import connections

        connections.close_all()
        self.stack.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class KeepAliveClient:
    """A load generator's HTTP/1.1 client: one keep-alive socket, the protocol kept by h11
    (a sans-I/O library, so one thread can drive several clients on a selector, as wrk
    does, and the load generator takes little of the CPU it shares with the platform).

    `request` sends one and waits for its answer; `send` and `answer` split that in two
    (see `run_concurrently`)."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = f"127.0.0.1:{port}".encode()
        self.conn = h11.Connection(h11.CLIENT)
        self.status: int | None = None
        self.body: list[bytes] = []

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
        self.send(method, path, body, headers)
        while (answer := self.answer()) is None:
            self.fill()
        return answer

    def send(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> None:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        fields = [(b"host", self.host), (b"content-length", str(len(body)).encode()),
                  *((name.encode(), str(value).encode()) for name, value in (headers or {}).items())]
        data = self.conn.send(h11.Request(method=method, target=path, headers=fields))
        data += self.conn.send(h11.Data(data=body)) if body else b""
        self.sock.sendall(data + self.conn.send(h11.EndOfMessage()))

    def answer(self) -> tuple[int, bytes] | None:
        """The answer to the request sent, if the bytes read so far hold all of it."""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                self.status, self.body = event.status_code, []
            elif isinstance(event, h11.Data):
                self.body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return self.status, b"".join(self.body)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection")

    def fill(self) -> None:
        self.conn.receive_data(self.sock.recv(65536))

    def close(self) -> None:
        self.sock.close()


def run_concurrently(clients: list[KeepAliveClient], counts: list[int], method: str, path: str, body: bytes,
                     headers: dict, check) -> list:
    """Client i sends `counts[i]` requests one after another, all clients at once, from this
    one thread (as wrk does: no thread per connection, whose switches and GIL hand-offs
    would take CPU from the platform measured). `check(status, body)` turns each answer
    into a result, or raises. Returns the results in the order the answers came."""
    import selectors

    results, left = [], dict(zip(clients, counts, strict=True))
    with selectors.DefaultSelector() as selector:
        for client, count in left.items():
            if count:
                client.send(method, path, body, headers)
                selector.register(client.sock, selectors.EVENT_READ, client)
        while selector.get_map():
            for key, _ in selector.select(timeout=60) or [(None, None)]:
                if key is None:
                    raise TimeoutError("no answer for 60 s")
                client = key.data
                client.fill()
                while (answer := client.answer()) is not None:
                    results.append(check(*answer))
                    left[client] -= 1
                    if left[client]:
                        client.send(method, path, body, headers)
                    else:
                        selector.unregister(client.sock)
                        break
    return results


def table(rows: list[tuple], headers: tuple) -> str:
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
