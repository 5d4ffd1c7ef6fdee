"""/healthz (the process is up) and /readyz (database, Redis and object storage answer)."""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

import storage


def healthz(request):
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _storage() -> None:
    storage.check()


CHECKS = {"database": _database, "redis": _redis, "storage": _storage}


def readyz(request):
    results, failed = {}, []
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            check()
            results[name] = {"ok": True, "ms": round(1000 * (time.monotonic() - started), 1)}
        except Exception as exc:  # noqa: BLE001  (any failure means not ready; say which and why)
            failed.append(name)
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            if name == "database":
                connection.close()  # do not reuse a broken connection for the next request
    body = {"status": "ok" if not failed else "unavailable", "failed": failed, "checks": results}
    return JsonResponse(body, status=200 if not failed else 503)
