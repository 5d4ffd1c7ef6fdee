"""/healthz and /readyz, with every service up, with a real one stopped and with one paused."""

import threading

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import wait_until
from tests.support.deadlines import within
from tests.support.pause import paused, stopped

pytestmark = pytest.mark.django_db

BUCKETS = [f"storage:{settings.S3_INPUT_BUCKET}", f"storage:{settings.S3_OUTPUT_BUCKET}"]
PARTS = {"postgres": ["database"], "redis": ["redis"], "s3": BUCKETS}


def readyz_answer(client) -> tuple[int, dict]:
    """/readyz's status and body; fails if no answer comes within (slack x) READYZ's 2 s."""
    answer = {}
    thread = threading.Thread(target=lambda: answer.update(response=client.get("/readyz")), daemon=True)
    thread.start()
    thread.join(within(2))
    assert "response" in answer, "/readyz gave no answer within its deadline"
    return answer["response"].status_code, answer["response"].json()


def test_healthz_is_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_with_every_service_up(client):
    status, body = readyz_answer(client)
    assert status == 200, body
    assert body["failed"] == []
    assert set(body["checks"]) == {"database", "redis", *BUCKETS}


def test_readyz_leaves_no_probe_objects_behind(client):
    import storage

    assert readyz_answer(client)[0] == 200
    for bucket in (storage.input_bucket(), storage.output_bucket()):
        assert storage.list_keys(bucket, storage.prefixed("readyz/")) == []


@pytest.mark.parametrize("server", ["s3", "redis"])
def test_readyz_is_503_naming_the_part_whose_server_is_stopped(client, server):
    with stopped(server):
        status, body = readyz_answer(client)

    assert status == 503
    assert body["failed"] == PARTS[server]
    assert {body["checks"][part]["status"] for part in PARTS[server]} == {"down"}
    wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30, what="readyz 200 again")


@pytest.mark.django_db(transaction=True)  # the connection is closed under the test: no wrapping transaction
def test_readyz_is_503_naming_the_database_when_it_is_unreachable(client):
    real = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = 1  # nothing listens there
    try:
        status, body = readyz_answer(client)
    finally:
        connection.close()
        connection.settings_dict.update(real)

    assert status == 503
    assert body["failed"] == ["database"]
    assert body["checks"]["database"]["status"] == "down"


@pytest.mark.slow
@pytest.mark.parametrize("server", ["s3", "redis", "postgres"])
def test_readyz_answers_503_in_time_naming_the_part_whose_server_hangs(client, server):
    with paused(server):
        status, body = readyz_answer(client)
        again = readyz_answer(client)  # the first probe is still stuck: not started twice, still hung

    assert status == 503, body
    assert body["failed"] == PARTS[server]
    assert {body["checks"][part]["status"] for part in PARTS[server]} == {"hung"}
    assert again[0] == 503
    assert again[1]["failed"] == PARTS[server]
    wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30, what="readyz 200 after resume")


def test_readyz_is_503_naming_a_bucket_that_refuses_writes(client):
    from tests.support.seaweed import read_only_bucket

    with read_only_bucket(settings.S3_OUTPUT_BUCKET):
        status, body = readyz_answer(client)

    assert status == 503
    assert body["failed"] == [f"storage:{settings.S3_OUTPUT_BUCKET}"]
    assert body["checks"][f"storage:{settings.S3_OUTPUT_BUCKET}"]["status"] == "unwritable"
    assert body["checks"][f"storage:{settings.S3_INPUT_BUCKET}"]["ok"] is True
    wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30, what="readyz 200 again")
