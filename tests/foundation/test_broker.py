"""jobplatform/broker.py: kombu's Redis transport publishing through one client per channel,
against the real Redis server."""

import base64
import json

import pytest
import redis
from django.conf import settings
from kombu import Exchange, Producer

from jobplatform.broker import Transport
from jobplatform.celery import app

QUEUE = "test-broker-shared-client"


@pytest.fixture
def plain():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(QUEUE)
    yield client
    client.delete(QUEUE)
    client.close()


def queued_bodies(client: redis.Redis) -> list:
    """The bodies on the queue, oldest first (kombu pushes to the left)."""
    out = []
    for raw in reversed(client.lrange(QUEUE, 0, -1)):
        message = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        out.append(json.loads(body))
    return out


def test_the_celery_app_uses_it_for_the_redis_broker():
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)


def test_publishes_share_one_client_arrive_in_order_and_survive_a_cut_connection(plain):
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        producer = Producer(channel, exchange=Exchange(""), routing_key=QUEUE, serializer="json")
        for n in range(3):
            producer.publish({"n": n})
        client = channel._shared_client
        producer.publish({"n": 3})
        assert client is not None and channel._shared_client is client

        # The server cuts every other connection (the publisher's too): the next publish
        # takes a new one from the channel's pool, as kombu's own clients do.
        killed = plain.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        producer.publish({"n": 4})
    assert queued_bodies(plain) == [{"n": n} for n in range(5)]
