"""/readyz with a real service stopped, and the stack leaving alone what the environment names."""

import pytest

from devstack.servers import Stack
from tests import stack_plugin

pytestmark = pytest.mark.django_db


def test_readyz_is_503_naming_storage_while_the_s3_server_is_stopped(client):
    s3_server = stack_plugin.STACK.s3
    if s3_server is None:
        pytest.skip("S3_ENDPOINT_URL names an external server; this test stops its own")
    s3_server.stop()
    try:
        response = client.get("/readyz")
    finally:
        s3_server.start()

    body = response.json()
    assert response.status_code == 503
    assert body["failed"] == ["storage"]
    assert "unreachable" in body["checks"]["storage"]["error"]
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_naming_redis_while_the_redis_server_is_stopped(client):
    redis_server = stack_plugin.STACK.redis
    if redis_server is None:
        pytest.skip("REDIS_URL names an external Redis; this test stops its own")
    redis_server.stop()
    try:
        response = client.get("/readyz")
    finally:
        redis_server.start()

    assert response.status_code == 503
    assert response.json()["failed"] == ["redis"]
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db(transaction=True)  # the connection is closed under the test: no wrapping transaction
def test_readyz_is_503_naming_the_database_when_it_is_unreachable(client):
    from django.db import connection

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


def test_the_stack_starts_nothing_for_services_the_environment_names(tmp_path):
    stack = Stack(tmp_path, durable=False)
    env = stack.start({"DATABASE_URL": "postgres://elsewhere/db", "REDIS_URL": "redis://elsewhere:6379/0",
                       "S3_ENDPOINT_URL": "http://elsewhere:9000"})

    assert env == {}
    assert (stack.postgres, stack.redis, stack.s3) == (None, None, None)
