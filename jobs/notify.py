"""Live notifications: what the browser sees over /ws/jobs/ and /ws/jobs/<id>/.

Called only after commit (state changes) or after the progress row is written, so a
client never hears of a state the database does not hold.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading

from channels.layers import get_channel_layer
from django.urls import reverse
from prometheus_client import REGISTRY

from . import metrics
from .models import Job, JobEvent, JobState

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 2.0  # seconds


def user_group(user_id: int) -> str:
    """Every change of a user's jobs goes to this one group: one publish per change. A socket
    watching one job (its owner's or staff's) joins its owner's group and keeps that job's."""
    return f"jobs.user.{user_id}"


def download_path(job_id) -> str:
    # A worker's URLconf is the web pages' alone (jobplatform/settings/worker.py), which the
    # root URLconf includes at "/": the same path in every process.
    return reverse("job-download", args=[job_id])


def job_payload(job: Job, event: JobEvent | None = None) -> dict:
    """The one JSON shape for a job's live state (WebSocket messages and the page's first paint)."""
    payload = {
        "id": str(job.id),
        "job_type": job.job_type,
        "state": job.state,
        "stalled": job.is_stalled,
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


def publish_failures() -> int:
    """Notifications this process could not publish since it started."""
    return int(REGISTRY.get_sample_value("jobplatform_notify_publish_failures_total") or 0)


class _Sender:
    """Sends channel-layer messages from sync code through one long-lived event loop.

    async_to_sync would start a fresh loop, and so a fresh Redis connection, for every
    message; this thread keeps one loop and one connection per process. A single consumer
    coroutine sends in order, so a client never sees a state before the one that preceded
    it. Created lazily, after a Celery prefork child is forked.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue | None = None
        self.idle = threading.Event()
        self.idle.set()
        ready = threading.Event()
        self.thread = threading.Thread(target=self.run, args=(ready,), name="notify-sender", daemon=True)
        self.thread.start()
        ready.wait(5)

    def run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue()
        ready.set()
        self.loop.run_until_complete(self.drain())

    async def drain(self) -> None:
        while True:
            groups, message = await self.queue.get()
            try:
                layer = get_channel_layer()  # looked up each time: a settings change replaces the layer
                # Bounded, so that a Redis that stopped answering holds up later
                # notifications for seconds, not until the connection gives up.
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    for group in groups:
                        await layer.group_send(group, message)
            except Exception:  # a notification must never fail the state change it reports
                metrics.notify_publish_failures.inc()
                logger.warning("notify.failed groups=%s", groups, exc_info=True)
            if self.queue.empty():
                self.idle.set()

    def send(self, groups: list[str], message: dict) -> None:
        self.idle.clear()
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (groups, message))

    def flush(self, timeout: float = 5.0) -> bool:
        return self.idle.wait(timeout)


_sender: _Sender | None = None
_sender_lock = threading.Lock()


def _get_sender() -> _Sender:
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid():
            _sender = _Sender()
            atexit.register(_sender.flush)
        return _sender


def _send(job: Job, message: dict) -> None:
    if get_channel_layer() is None:
        return
    _get_sender().send([user_group(job.owner_id)], message)


def flush(timeout: float = 5.0) -> bool:
    """Waits until every queued notification was handed to the channel layer (or failed)."""
    return _sender is None or _sender.flush(timeout)


def job_changed(job: Job, *, event: JobEvent | None = None) -> None:
    _send(job, {"type": "job.update", "job": job_payload(job, event)})
