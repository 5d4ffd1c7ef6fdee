"""/healthz and /readyz, with every service up and with a real one stopped."""

import pytest
from django.db import connection

from tests import stack_plugin

pytestmark = pytest.mark.django_db


def test_healthz_is_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_with_every_service_up(client):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["failed"] == []
    assert set(body["checks"]) == {"database", "redis", "storage"}


@pytest.mark.parametrize(("service", "server", "error"), [("storage", "s3", "unreachable"),
                                                          ("redis", "redis", "ConnectionError")])
def test_readyz_is_503_naming_the_service_whose_server_is_stopped(client, service, server, error):
    stopped = getattr(stack_plugin.STACK, server)
    if stopped is None:
        pytest.skip(f"the environment names an external {service} server; this test stops its own")
    stopped.stop()
    try:
        response = client.get("/readyz")
    finally:
        stopped.start()

    body = response.json()
    assert response.status_code == 503
    assert body["failed"] == [service]
    assert error in body["checks"][service]["error"]
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db(transaction=True)  # the connection is closed under the test: no wrapping transaction
def test_readyz_is_503_naming_the_database_when_it_is_unreachable(client):
    real = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = 1  # nothing listens there
    try:
        response = client.get("/readyz")
    finally:
        connection.close()
        connection.settings_dict.update(real)

    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]
