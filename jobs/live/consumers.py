"""WebSocket consumers for live job status: /ws/jobs/ (all of a user's jobs) and /ws/jobs/<id>/.

Messages to the browser (JSON):
- {"type": "job.update", "job": {...notify.job_payload...}}: one job changed (state or progress);
- {"type": "jobs.snapshot", "jobs": [...]}: on connect to /ws/jobs/, the user's live and
  recently finished jobs, so a reconnecting page catches up on what it missed.

A refused socket is accepted and then closed with a code the page can act on (a socket
refused during the handshake reaches the browser as an anonymous 1006, the same as a
network failure, and the page would retry forever):
- 4401: not signed in (the page tells the user to sign in again, and stops retrying);
- 4404: no such job, or not the user's (the same code for both, as the pages do).

What the browser sends is ignored: the sockets only push.
"""

from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from jobs import notify, selectors
from jobs.errors import JobError

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class _JobSocket(AsyncWebsocketConsumer):
    group: str | None = None

    async def refuse(self, code: int) -> None:
        await self.accept()
        await self.close(code=code)

    async def subscribe(self, group: str) -> None:
        # Joined before the current state is read from the database, so that a change
        # committed in between arrives as a message after the snapshot: never missed.
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return None

    def wants(self, job: dict) -> bool:
        return True

    async def job_update(self, event: dict) -> None:
        if self.wants(event["job"]):
            await self.send(text_data=json.dumps({"type": "job.update", "job": event["job"]}))


class JobListConsumer(_JobSocket):
    """Every job of the signed-in user."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return
        await self.subscribe(notify.user_group(user.id))
        await self.accept()
        jobs = await database_sync_to_async(_snapshot)(user)
        await self.send(text_data=json.dumps({"type": "jobs.snapshot", "jobs": jobs}))


class JobDetailConsumer(_JobSocket):
    """One job: its owner's, or any job for staff. Changes arrive through the owner's group
    (notify.user_group), filtered here to this job."""

    job_id: str = ""

    def wants(self, job: dict) -> bool:
        return job["id"] == self.job_id

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        try:
            job = await database_sync_to_async(selectors.job_get)(user=user, job_id=job_id, allow_staff=True)
        except JobError:
            await self.refuse(CLOSE_NOT_FOUND)
            return
        self.job_id = str(job.id)  # the canonical form, as notify's payload carries it
        await self.subscribe(notify.user_group(job.owner_id))
        await self.accept()
        payload = await database_sync_to_async(_current)(user, job.id)
        await self.send(text_data=json.dumps({"type": "job.update", "job": payload}))


class NotFoundConsumer(_JobSocket):
    """Any other /ws/ path: a clear close code instead of a routing error in the server log."""

    async def connect(self) -> None:
        await self.refuse(CLOSE_NOT_FOUND)


def _snapshot(user) -> list[dict]:
    return [notify.job_payload(job) for job in selectors.job_list_live(user=user)]


def _current(user, job_id) -> dict:
    return notify.job_payload(selectors.job_get(user=user, job_id=job_id, allow_staff=True))
