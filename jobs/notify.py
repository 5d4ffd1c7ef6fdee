"""Live notifications: what the browser sees over /ws/jobs/ and /ws/jobs/<id>/.

Called only after commit (state changes) or after the progress row is written, so a
client never hears of a state the database does not hold.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import threading

from channels.layers import get_channel_layer
from django.conf import settings
from django.urls import reverse

from .models import Job, JobEvent, JobState

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"jobs.user.{user_id}"


def job_group(job_id) -> str:
    return f"jobs.job.{job_id}"


# The web pages' URLconf, which the root one includes at "/" (tests/live checks that both
# give the same path). A Celery worker reverses the result link through it alone: the whole
# URLconf would import the admin, the API's views and drf-spectacular into every worker
# process for this one link (~16 MiB of RSS each; docs/benchmarks.md, issue 5).
WEB_URLCONF = "jobs.web.urls"


def download_path(job_id) -> str:
    return reverse("job-download", urlconf=WEB_URLCONF, args=[job_id])


def job_payload(job: Job, event: JobEvent | None = None) -> dict:
    """The one JSON shape for a job's live state (WebSocket messages and the page's first paint)."""
    payload = {
        "id": str(job.id),
        "job_type": job.job_type,
        "state": job.state,
        "terminal": job.is_terminal,
        "attempt": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": {"bytes": job.progress_bytes, "total": job.progress_total, "percent": job.progress_percent},
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "result_url": download_path(job.id) if job.state == JobState.COMPLETED else None,
        "updated_at": job.updated_at.isoformat() if job.updated_at else None,
    }
    if event is not None:
        payload["event"] = {"from": event.from_state, "to": event.to_state, "reason": event.reason,
                            "actor": event.actor, "at": event.created_at.isoformat()}
    return payload


class _Sender:
    """Sends channel-layer messages from sync code through one long-lived event loop.

    async_to_sync would start a fresh loop, and so a fresh Redis connection, for every
    message (about 8 ms each); this thread keeps one loop and one connection per process.
    A single consumer coroutine sends in order, so a client never sees a state before the
    one that preceded it. Created lazily, after a Celery prefork child is forked.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue | None = None
        self.idle = threading.Event()
        self.idle.set()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name="notify-sender", daemon=True)
        self.thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue()
        ready.set()
        self.loop.run_until_complete(self._drain())

    async def _drain(self) -> None:
        layer = get_channel_layer()
        while True:
            groups, message = await self.queue.get()
            try:
                for group in groups:
                    await layer.group_send(group, message)
            except Exception:  # a notification must never fail the state change it reports
                logger.warning("notify.failed groups=%s", groups, exc_info=True)
            if self.queue.empty():
                self.idle.set()

    def send(self, groups: list[str], message: dict) -> None:
        self.idle.clear()
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (groups, message))

    def flush(self, timeout: float = 5.0) -> bool:
        return self.idle.wait(timeout)


_publisher_numbers = itertools.count(1)


class _RedisPublisher:
    """Sends group messages of the Redis pub/sub channel layer (our configuration) from
    sync code directly: a PUBLISH per group, of the layer's own serialization of the
    message, on the channel its group_send publishes to. That is all group_send does;
    this skips the event loop the layer needs (the _Sender thread's loop cost about a
    tenth of a worker's CPU per tiny job, bench/throughput.py).

    The connection is the process's own and told `CLIENT REPLY OFF` each time it
    connects: Redis answers nothing on it, so a PUBLISH is written and not waited for.
    A notification is best effort (it must never fail or hold up the state change it
    reports), and on a busy two-core machine each reply waited for cost a worker about
    a millisecond of scheduling. Written in the caller's thread, after commit, under a
    lock, so messages leave in the order the states were reached. A short socket timeout
    bounds what a Redis outage can cost; the next message reconnects.
    """

    pid = None

    def __init__(self, layer, url: str, prefix: str) -> None:
        import redis

        self.pid = os.getpid()
        self.layer, self.prefix = layer, prefix
        self.lock = threading.Lock()
        # A name of its own in CLIENT LIST (a process may hold more than one publisher).
        self.client_name = f"jobplatform-notify-{self.pid}-{next(_publisher_numbers)}"
        self.connection = redis.ConnectionPool.from_url(
            url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=0,
            client_name=self.client_name, redis_connect_func=self._replies_off).make_connection()

    @staticmethod
    def _replies_off(connection) -> None:
        connection.on_connect()  # the handshake (AUTH, SELECT, SETNAME), which does read its replies
        connection.send_command("CLIENT", "REPLY", "OFF", check_health=False)

    def channel(self, group: str) -> str:
        # channels_redis.pubsub.RedisPubSubLoopLayer._get_group_channel_name; checked
        # against the layer itself in tests/live/test_consumers.py.
        return f"{self.prefix}__group__{group}"

    def send(self, groups: list[str], message: dict) -> None:
        data = self.layer.serialize(message)
        commands = [("PUBLISH", self.channel(group), data) for group in groups]
        try:
            with self.lock:
                # Connects (and turns replies off) first if the last send broke the connection.
                self.connection.send_packed_command(self.connection.pack_commands(commands), check_health=False)
        except Exception:  # a notification must never fail the state change it reports
            logger.warning("notify.failed groups=%s", groups, exc_info=True)

    def flush(self, timeout: float = 5.0) -> bool:
        return True


def _direct_publisher(layer) -> _RedisPublisher | None:
    """A _RedisPublisher when the layer is channels_redis's pub/sub layer on one Redis."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    config = settings.CHANNEL_LAYERS.get("default", {}).get("CONFIG", {})
    hosts = config.get("hosts")
    if (not isinstance(layer, RedisPubSubChannelLayer) or not isinstance(hosts, list | tuple) or len(hosts) != 1
            or not isinstance(hosts[0], str) or set(config) - {"hosts", "prefix", "symmetric_encryption_keys"}):
        return None
    return _RedisPublisher(layer, hosts[0], config.get("prefix", "asgi"))


_sender: _Sender | _RedisPublisher | None = None
_sender_lock = threading.Lock()


def _get_sender(layer) -> _Sender | _RedisPublisher:
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid():
            _sender = _direct_publisher(layer) or _Sender()
            atexit.register(_sender.flush)
        return _sender


def _send(job: Job, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    _get_sender(layer).send([job_group(job.id), user_group(job.owner_id)], message)


def flush(timeout: float = 5.0) -> bool:
    """Waits until every queued notification was handed to the channel layer."""
    return _sender is None or _sender.flush(timeout)


def job_changed(job: Job, *, event: JobEvent | None = None) -> None:
    _send(job, {"type": "job.update", "job": job_payload(job, event)})
