"""Live job status over WebSockets: who may listen to what, and what they hear.

Against the real ASGI application (session auth, origin check) and the real Redis
channel layer; state changes are made through the services, as in production.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.test import Client
from websockets.sync.client import connect as ws_connect

from jobplatform.asgi import application
from jobs import notify
from jobs.models import Job, JobState
from jobs.services.actions import job_cancel
from jobs.services.create import job_create
from tests.jobs.live.sockets import WebSocketClient
from tests.support.deadlines import within

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
    return job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=key).job


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
        await database_sync_to_async(job_cancel)(job=queued_job, actor="test")
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


@pytest.mark.parametrize("watcher", ["owner", "staff"])
def test_a_job_socket_receives_a_state_change_pushed_by_a_service(queued_job, user, staff_user, watcher):
    """The owner watching their job, and staff watching another user's job."""
    viewer = user if watcher == "owner" else staff_user

    async def scenario():
        comm = socket(f"/ws/jobs/{queued_job.id}/", await database_sync_to_async(session_cookie)(viewer))
        await comm.connect()
        await next_json(comm)  # the initial state
        await database_sync_to_async(job_cancel)(job=queued_job, actor="user:test")
        pushed = await next_json(comm)
        await comm.disconnect()
        return pushed

    pushed = async_to_sync(scenario)()
    assert pushed["type"] == "job.update"
    assert pushed["job"]["id"] == str(queued_job.id)
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
        await database_sync_to_async(job_cancel)(job=queued_job, actor="user:test")
        pushed = await next_json(comm)
        await comm.disconnect()
        return snapshot, pushed

    snapshot, pushed = async_to_sync(scenario)()
    assert snapshot["type"] == "jobs.snapshot"
    assert [j["id"] for j in snapshot["jobs"]] == [str(queued_job.id)]
    assert (pushed["job"]["id"], pushed["job"]["state"]) == (str(queued_job.id), JobState.CANCELLED)


def test_a_reconnect_catches_up_on_a_final_state_reached_while_away(queued_job, user):
    job_cancel(job=queued_job, actor="user:test")  # while no socket was open

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


def test_a_job_socket_hears_nothing_of_the_owners_other_jobs(queued_job, user, upload):
    other = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=upload(user, CSV, "other.csv")).job

    async def scenario():
        comm = socket(f"/ws/jobs/{queued_job.id}/", await database_sync_to_async(session_cookie)(user))
        await comm.connect()
        await next_json(comm)  # the initial state
        await database_sync_to_async(job_cancel)(job=other, actor="user:test")
        await database_sync_to_async(job_cancel)(job=queued_job, actor="user:test")
        pushed = await next_json(comm)
        await comm.disconnect()
        return pushed

    pushed = async_to_sync(scenario)()
    # The other job's change came first; the socket's first message is its own job's.
    assert (pushed["job"]["id"], pushed["job"]["state"]) == (str(queued_job.id), JobState.CANCELLED)


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
        await database_sync_to_async(job_cancel)(job=queued_job, actor="user:test")
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


def test_with_redis_unreachable_a_state_change_succeeds_and_the_failed_publish_is_counted(queued_job, settings):
    from devstack.servers import free_port

    failed_before = notify.publish_failures()
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                                           "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]}}}

    job_cancel(job=queued_job, actor="user:test")

    assert Job.objects.get(pk=queued_job.pk).state == JobState.CANCELLED
    assert notify.flush(within(10))
    assert notify.publish_failures() > failed_before


def test_a_browser_hears_every_state_of_a_job_in_order_from_a_real_server(start_web_server, worker, user, upload):
    server = start_web_server()
    sid = session_cookie(user)
    url = f"ws://127.0.0.1:{server.port}/ws/jobs/"
    with ws_connect(url, origin="http://127.0.0.1", additional_headers={"Cookie": f"sessionid={sid}"},
                    open_timeout=within(10)) as browser:
        assert json.loads(browser.recv(timeout=within(10)))["type"] == "jobs.snapshot"
        job = job_create(owner=user, job_type="CSV_ROW_COUNT", input_key=upload(user, CSV, "a.csv")).job
        states: list[str] = []
        while not states or states[-1] != JobState.COMPLETED:
            message = json.loads(browser.recv(timeout=within(30)))
            assert message["job"]["id"] == str(job.id)
            if not states or states[-1] != message["job"]["state"]:
                states.append(message["job"]["state"])

    assert states[-3:] == [JobState.QUEUED, JobState.PROCESSING, JobState.COMPLETED]
    assert states[:-3] in ([], [JobState.CREATED])
    # The worker published the COMPLETED message, reversing the link through its own URLconf.
    assert message["job"]["result_url"] == f"/jobs/{job.id}/download"
