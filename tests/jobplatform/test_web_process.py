"""The web process: Django's views on a fixed pool of threads, each keeping its database
connection between requests (a real Uvicorn against the test database)."""

from __future__ import annotations

import psutil
import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db(transaction=True)


def backends_of(pid: int) -> set[int]:
    """The PostgreSQL backends serving the connections of process `pid`."""
    ports = {c.laddr.port for c in psutil.Process(pid).net_connections(kind="inet") if c.raddr}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database()")
        return {backend for backend, port in cursor.fetchall() if port in ports}


def test_the_web_process_keeps_one_database_connection_per_thread_between_requests(start_web_server, user):
    key = Token.objects.create(user=user).key
    server = start_web_server(WEB_THREADS="2")
    with server.client(headers={"Authorization": f"Token {key}"}) as client:
        assert all(client.get("/api/v1/jobs/").status_code == 200 for _ in range(20))
        first = backends_of(server.proc.pid)
        assert all(client.get("/api/v1/jobs/").status_code == 200 for _ in range(20))
        second = backends_of(server.proc.pid)

    # Each of the two threads opens one connection the first time it serves a request and
    # keeps it: the first ones are still there, and there are never more than threads.
    assert 1 <= len(first) <= 2
    assert first <= second
    assert len(second) <= 2


def test_a_django_view_answers_behind_the_asgi_router(start_web_server):
    server = start_web_server()
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/api/v1/jobs/").status_code == 401
