"""The web process: Django's views on a fixed pool of threads, each keeping its database
connection between requests (a real Uvicorn against the test database)."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db(transaction=True)


def backends_of_others() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        return {row[0] for row in cursor.fetchall()}


def test_the_web_process_keeps_one_database_connection_per_thread_between_requests(start_web_server, user):
    key = Token.objects.create(user=user).key
    server = start_web_server(WEB_THREADS="2")
    with server.client(headers={"Authorization": f"Token {key}"}) as client:
        assert all(client.get("/api/v1/jobs/").status_code == 200 for _ in range(20))
        first = backends_of_others()
        assert all(client.get("/api/v1/jobs/").status_code == 200 for _ in range(20))
        second = backends_of_others()

    assert 1 <= len(first) <= 2
    assert second == first


def test_a_django_view_answers_behind_the_asgi_router(start_web_server):
    server = start_web_server()
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/api/v1/jobs/").status_code == 401
