"""/healthz (the process is up) and /readyz (database, Redis, the broker and both buckets answer).

The broker is checked on its own when it is not the Redis of REDIS_URL (RabbitMQ).

/readyz answers within READYZ_TIMEOUT seconds whatever the dependencies do: each check runs
on a thread of its own, all at once, and a check that has not returned by then is reported
as hung. A check still running from an earlier request is not started again (a hung server
would otherwise collect one stuck thread per probe); it is reported as hung until it returns.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from kombu import Connection

import storage


def healthz(request):
    return JsonResponse({"status": "ok"})


class Unwritable(Exception):
    """The part answers reads but refuses a write (a bucket with no writable space, say)."""


def _database(timeout: float) -> None:
    # This thread's own connection: connect_timeout and statement_timeout bound it.
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


def _redis(timeout: float) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def _broker(timeout: float) -> None:
    """A connection (credentials and vhost accepted) and a channel; one try, no retry pause."""
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout) as broker:
        broker.ensure_connection(max_retries=0)
        broker.default_channel  # noqa: B018  (opening a channel is the check)


def _probe_key() -> str:
    return storage.prefixed(f"readyz/{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}")


def _bucket(bucket: str) -> Callable[[float], None]:
    def check(timeout: float) -> None:
        """A read (the bucket answers), then a write and a delete (it has room for one)."""
        key = _probe_key()
        if settings.STORAGE_BACKEND == "local":
            storage.list_keys(bucket, storage.prefixed("readyz/"))
            try:
                storage.put_bytes(bucket, key, b"readyz")
                storage.delete(bucket, key)
            except storage.StorageError as exc:
                raise Unwritable(str(exc)) from exc
            return
        from storage import objects

        objects.probe_read(bucket, timeout=timeout)
        try:
            objects.probe_write(bucket, key, timeout=timeout)
        except storage.StorageError as exc:
            raise Unwritable(str(exc)) from exc

    return check


def checks() -> dict[str, Callable[[float], None]]:
    broker = {"broker": _broker} if settings.CELERY_BROKER_URL != settings.REDIS_URL else {}
    return {
        "database": _database,
        "redis": _redis,
        **broker,
        f"storage:{storage.input_bucket()}": _bucket(storage.input_bucket()),
        f"storage:{storage.output_bucket()}": _bucket(storage.output_bucket()),
    }


class _Run(threading.Thread):
    def __init__(self, name: str, check: Callable[[float], None], timeout: float):
        super().__init__(name=f"readyz-{name}", daemon=True)
        self.check, self.timeout = check, timeout
        self.started_at = time.monotonic()
        self.result: dict | None = None

    def run(self) -> None:
        try:
            self.check(self.timeout)
        except Unwritable as exc:
            self.result = {"ok": False, "status": "unwritable", "error": str(exc)[:300]}
        except Exception as exc:  # noqa: BLE001  (any failure means not ready; say which and why)
            self.result = {"ok": False, "status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            self.result = {"ok": True, "ms": round(1000 * (time.monotonic() - self.started_at), 1)}


_running: dict[str, _Run] = {}
_running_lock = threading.Lock()


def readyz(request):
    body = readiness()
    return JsonResponse(body, status=200 if not body["failed"] else 503)


def readiness() -> dict:
    """Runs every check at once (at most one run of each at a time); answers within READYZ_TIMEOUT."""
    timeout = settings.READYZ_TIMEOUT
    deadline = time.monotonic() + timeout
    runs: dict[str, _Run] = {}
    with _running_lock:
        for name, check in checks().items():
            previous = _running.get(name)
            if previous is not None and previous.is_alive():
                runs[name] = previous
                continue
            # A hung server outlasts the answer's deadline, so it shows as hung, not as an error.
            runs[name] = _running[name] = _Run(name, check, timeout + 0.5)
            runs[name].start()
    results, failed = {}, []
    for name, run in runs.items():
        run.join(max(0.0, deadline - time.monotonic()))
        result = run.result
        if result is None:
            waited = time.monotonic() - run.started_at
            result = {"ok": False, "status": "hung", "error": f"no answer after {waited:.1f}s"}
        results[name] = result
        if not result["ok"]:
            failed.append(name)
    return {"status": "ok" if not failed else "unavailable", "failed": failed, "checks": results}
