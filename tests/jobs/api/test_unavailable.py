"""The API answers 503 service_unavailable with Retry-After, never a 500, while the database
or object storage is down or hung; and it works again once the part is back."""

from __future__ import annotations

import httpx
import pytest
from django.db import connection, connections
from rest_framework.authtoken.models import Token

from tests.support.deadlines import within
from tests.support.pause import paused, stopped

from .conftest import CSV, error_of

URL = "/api/v1/jobs/"


def assert_unavailable(response, part: str) -> None:
    assert response.status_code == 503, response.text
    error = error_of(response)
    assert error["code"] == "service_unavailable"
    assert error["details"]["part"] == part
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.django_db(transaction=True)  # the connection is closed under the test: no wrapping transaction
def test_list_is_503_service_unavailable_when_the_database_refuses_connections(api):
    real = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = 1  # nothing listens there
    try:
        response = api.get(URL)
    finally:
        connection.close()
        connection.settings_dict.update(real)

    assert_unavailable(response, "database")


@pytest.fixture
def served(start_web_server, user, upload):
    """A real Uvicorn, a token client on it, and an uploaded input; the client has made one
    request already, so its server thread holds a database connection (the common case)."""
    server = start_web_server(S3_HEAD_TIMEOUT="2")
    token = Token.objects.create(user=user).key
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Token {token}"}, timeout=within(5))
    assert http.get(URL).status_code == 200
    key = upload(user, CSV)
    yield http, key
    http.close()


def create(http, key: str):
    return http.post(URL, json={"job_type": "CSV_ROW_COUNT", "input_object_key": key})


def assert_serves_again(http, key: str) -> None:
    connections.close_all()  # this process's own connection did not survive either
    assert http.get(URL).status_code == 200
    assert create(http, key).status_code == 201


@pytest.mark.slow
def test_list_and_create_are_503_while_the_database_is_paused(served):
    http, key = served
    with paused("postgres"):
        listing, created = http.get(URL), create(http, key)

    assert_unavailable(listing, "database")
    assert_unavailable(created, "database")
    assert_serves_again(http, key)


@pytest.mark.slow
def test_list_and_create_are_503_while_the_database_is_stopped(served):
    http, key = served
    with stopped("postgres"):
        listing, created = http.get(URL), create(http, key)

    assert_unavailable(listing, "database")
    assert_unavailable(created, "database")
    assert_serves_again(http, key)


@pytest.mark.slow
@pytest.mark.parametrize("fault", [paused, stopped], ids=["paused", "stopped"])
def test_create_is_503_while_object_storage_is_away(served, fault):
    http, key = served
    with fault("s3"):
        created = create(http, key)
        listing = http.get(URL)  # no object storage involved: still served

    assert created.status_code == 503, created.text
    assert error_of(created)["code"] in ("service_unavailable", "storage_unavailable")
    assert int(created.headers["Retry-After"]) > 0
    assert listing.status_code == 200
