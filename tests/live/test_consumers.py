"""Live job status over WebSockets: who may listen to what, and what they hear.

Against the real ASGI application (session auth, origin check) and the real Redis
channel layer; state changes are made through the services, as in production.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.test import Client

from jobplatform.asgi import application
from jobs import services
from jobs.models import JobState
from tests.live.sockets import WebSocketClient

pytestmark = pytest.mark.django_db(transaction=True)

CSV = b"a,b\n1,2\n"


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def socket(path: str, sessionid: str | None = None) -> WebSocketClient:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if sessionid:
        headers.append((b"cookie", f"sessionid={sessionid}".encode()))
    return WebSocketClient(application, path, headers=headers)


async def close_code(comm: WebSocketClient) -> int | None:
    """The code the server closed with: refused sockets are accepted, then closed at once."""
    connected, code = await comm.connect()
    if not connected:
        return code
    message = await comm.receive_output()
    assert message["type"] == "websocket.close", message
    return message.get("code")


async def next_json(comm: WebSocketClient, timeout: float = 5) -> dict:
    return await comm.receive_json(timeout)


@pytest.fixture
def queued_job(user, upload):
    key = upload(user, CSV, "small.csv")
    return services.job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key).job


def test_an_anonymous_socket_is_closed_with_4401_on_the_list(db):
    assert async_to_sync(close_code)(socket("/ws/jobs/")) == 4401


def test_an_anonymous_socket_is_closed_with_4401_on_a_job(queued_job):
    assert async_to_sync(close_code)(socket(f"/ws/jobs/{queued_job.id}/")) == 4401


def test_another_user_cannot_subscribe_to_someone_elses_job(queued_job, other_user):
    async def scenario():
        comm = socket(f"/ws/jobs/{queued_job.id}/", await database_sync_to_async(session_cookie)(other_user))
        return await close_code(comm)

    assert async_to_sync(scenario)() == 4404


def test_another_user_hears_nothing_of_someone_elses_job_change(queued_job, other_user):
    async def scenario():
        comm = socket("/ws/jobs/", await database_sync_to_async(session_cookie)(other_user))
        connected, _ = await comm.connect()
        assert connected
        snapshot = await next_json(comm)
        await database_sync_to_async(services.job_cancel)(job=queued_job, actor="test")
        nothing = await comm.receive_nothing(timeout=0.5)
        await comm.disconnect()
        return snapshot, nothing

    snapshot, nothing = async_to_sync(scenario)()
    assert snapshot == {"type": "jobs.snapshot", "jobs": []}
    assert nothing


def test_a_malformed_or_unknown_job_id_or_path_is_closed_with_4404(user):
    async def scenario():
        sid = await database_sync_to_async(session_cookie)(user)
        return [await close_code(socket(path, sid)) for path in
                ("/ws/jobs/not-a-uuid/", "/ws/jobs/00000000-0000-0000-0000-000000000000/", "/ws/jobs/%00'%22<x>/",
                 "/ws/jobs/" + "a" * 5000 + "/", "/ws/jobs/x/y/", "/ws/elsewhere/")]

    assert async_to_sync(scenario)() == [4404] * 6


def test_the_owner_gets_the_current_state_at_once_on_connect(queued_job, user):
    async def scenario():
        comm = socket(f"/ws/jobs/{queued_job.id}/", await database_sync_to_async(session_cookie)(user))
        connected, _ = await comm.connect()
        assert connected
        first = await next_json(comm)
        await comm.disconnect()
        return first

    first = async_to_sync(scenario)()
    assert first["type"] == "job.update"
    assert first["job"]["id"] == str(queued_job.id)
    assert first["job"]["state"] == JobState.QUEUED
    assert first["job"]["progress"]["total"] == len(CSV)


def test_the_owner_receives_a_state_change_pushed_by_a_service(queued_job, user):
    async def scenario():
        comm = socket(f"/ws/jobs/{queued_job.id}/", await database_sync_to_async(session_cookie)(user))
        await comm.connect()
        await next_json(comm)  # the initial state
        await database_sync_to_async(services.job_cancel)(job=queued_job, actor="user:test")
        pushed = await next_json(comm)
        await comm.disconnect()
        return pushed

    pushed = async_to_sync(scenario)()
    assert pushed["type"] == "job.update"
    assert pushed["job"]["state"] == JobState.CANCELLED
    assert pushed["job"]["terminal"] is True
    assert pushed["job"]["event"]["from"] == JobState.QUEUED
    assert pushed["job"]["event"]["to"] == JobState.CANCELLED
    assert pushed["job"]["error"] == {"code": "cancelled", "message": "cancelled by request"}


def test_the_list_socket_sends_a_snapshot_and_then_every_change_of_the_users_jobs(queued_job, user):
    async def scenario():
        comm = socket("/ws/jobs/", await database_sync_to_async(session_cookie)(user))
        await comm.connect()
        snapshot = await next_json(comm)
        await database_sync_to_async(services.job_cancel)(job=queued_job, actor="user:test")
        pushed = await next_json(comm)
        await comm.disconnect()
        return snapshot, pushed

    snapshot, pushed = async_to_sync(scenario)()
    assert snapshot["type"] == "jobs.snapshot"
    assert [j["id"] for j in snapshot["jobs"]] == [str(queued_job.id)]
    assert (pushed["job"]["id"], pushed["job"]["state"]) == (str(queued_job.id), JobState.CANCELLED)


def test_a_reconnect_catches_up_on_a_final_state_reached_while_away(queued_job, user):
    services.job_cancel(job=queued_job, actor="user:test")  # while no socket was open

    async def scenario():
        sid = await database_sync_to_async(session_cookie)(user)
        detail, listing = socket(f"/ws/jobs/{queued_job.id}/", sid), socket("/ws/jobs/", sid)
        await detail.connect()
        await listing.connect()
        result = await next_json(detail), await next_json(listing)
        await detail.disconnect()
        await listing.disconnect()
        return result

    detail, listing = async_to_sync(scenario)()
    assert detail["job"]["state"] == JobState.CANCELLED
    assert [(j["id"], j["state"]) for j in listing["jobs"]] == [(str(queued_job.id), JobState.CANCELLED)]


def test_staff_may_watch_any_job(queued_job, staff_user):
    async def scenario():
        comm = socket(f"/ws/jobs/{queued_job.id}/", await database_sync_to_async(session_cookie)(staff_user))
        connected, _ = await comm.connect()
        first = await next_json(comm)
        await comm.disconnect()
        return connected, first

    connected, first = async_to_sync(scenario)()
    assert connected and first["job"]["id"] == str(queued_job.id)


def test_what_the_browser_sends_is_ignored_and_the_socket_stays_open(queued_job, user):
    async def scenario():
        comm = socket(f"/ws/jobs/{queued_job.id}/", await database_sync_to_async(session_cookie)(user))
        await comm.connect()
        await next_json(comm)
        forged = json.dumps({"type": "job.update", "job": {"state": "COMPLETED"}})
        for junk in ("not json", "{}", forged, "x" * 100_000):
            await comm.send_text(junk)
        await comm.send_bytes(b"\x00\xff" * 1000)
        quiet = await comm.receive_nothing(timeout=0.3)
        await database_sync_to_async(services.job_cancel)(job=queued_job, actor="user:test")
        pushed = await next_json(comm)
        await comm.disconnect()
        return quiet, pushed

    quiet, pushed = async_to_sync(scenario)()
    assert quiet
    assert pushed["job"]["state"] == JobState.CANCELLED


def test_a_socket_from_a_foreign_origin_is_refused(queued_job, user):
    async def scenario():
        sid = await database_sync_to_async(session_cookie)(user)
        headers = [(b"origin", b"http://evil.example"), (b"cookie", f"sessionid={sid}".encode())]
        comm = WebSocketClient(application, f"/ws/jobs/{queued_job.id}/", headers=headers)
        connected, _ = await comm.connect()
        return connected

    assert async_to_sync(scenario)() is False


def test_the_direct_publisher_publishes_where_the_layer_listens_for_a_group(user):
    """jobs/notify.py publishes group messages without the layer's event loop; its channel
    name and serialization must stay the layer's own (channels_redis upgrades included)."""
    from channels.layers import get_channel_layer

    from jobs import notify

    layer = get_channel_layer()
    publisher = notify._direct_publisher(layer)
    assert publisher is not None, "the configured layer should take the direct path"

    async def scenario():
        assert layer._get_layer()._get_group_channel_name("jobs.user.1") == publisher.channel("jobs.user.1")
        channel = await layer.new_channel()
        await layer.group_add(notify.user_group(user.pk), channel)
        for _ in range(5):  # Redis may take the PUBLISH before the layer's SUBSCRIBE lands
            await database_sync_to_async(publisher.send)([notify.user_group(user.pk)], {"type": "job.update", "n": 1})
            try:
                return await asyncio.wait_for(layer.receive(channel), 1)
            except TimeoutError:
                continue
        return None

    assert async_to_sync(scenario)() == {"type": "job.update", "n": 1}


def test_the_direct_publisher_waits_for_no_replies_and_reconnects_after_a_cut(user, settings):
    """Its connection is told CLIENT REPLY OFF (nothing is waited for, nothing piles up unread),
    and a connection Redis cut is made again, replies off, by a later message."""
    import time

    import redis
    from channels.layers import get_channel_layer

    from jobs import notify

    layer = get_channel_layer()
    publisher = notify._direct_publisher(layer)
    admin = redis.Redis.from_url(settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0])
    group = notify.user_group(user.pk)

    def ours() -> dict | None:
        return next((c for c in admin.client_list() if c.get("name") == publisher.client_name), None)

    for n in range(2000):
        publisher.send([group], {"type": "job.update", "n": n})
    client = ours()
    assert client is not None and client["cmd"] in ("publish", "client|reply")
    assert not publisher.connection.can_read(timeout=0.3)  # Redis sent no reply to any of them

    # A plain subscriber on the group's channel (delivery through the layer itself is the
    # test above), subscribed before the cut.
    subscriber = admin.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(publisher.channel(group))
    assert subscriber.get_message(timeout=2) is None  # consumes the subscribe confirmation
    admin.client_kill_filter(_id=client["id"])
    received, deadline = None, time.monotonic() + 10
    while received is None and time.monotonic() < deadline:  # the first write after the cut may be lost
        publisher.send([group], {"type": "job.update", "after": "cut"})
        received = subscriber.get_message(timeout=0.5)
    subscriber.close()

    assert received is not None and layer.deserialize(received["data"])["after"] == "cut"
    assert ours() is not None and ours()["id"] != client["id"]  # a new connection, again without replies:
    for n in range(100):
        publisher.send([group], {"type": "job.update", "n": n})
    assert not publisher.connection.can_read(timeout=0.3)
