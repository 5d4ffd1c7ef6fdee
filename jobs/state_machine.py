"""The job state machine: the allowed moves, and the one function that makes them.

Every state change in the platform goes through `job_transition`. It locks the row,
checks the move against ALLOWED and the caller's expectations, writes the JobEvent in
the same transaction, and sends the live notification only after commit. A late or
duplicate message therefore cannot move a job backwards or complete it twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from .models import Job, JobEvent, JobState

logger = logging.getLogger(__name__)

S = JobState
ALLOWED: dict[str, frozenset[str]] = {
    S.CREATED: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.PROCESSING, S.CANCELLED}),
    # PROCESSING -> QUEUED: the sweeper found its lease expired (the worker died).
    S.PROCESSING: frozenset({S.COMPLETED, S.RETRYING, S.FAILED, S.DEAD, S.CANCELLED, S.QUEUED}),
    # RETRYING -> QUEUED: the sweeper found the retry overdue (its message was lost).
    S.RETRYING: frozenset({S.PROCESSING, S.CANCELLED, S.QUEUED, S.DEAD}),
    S.FAILED: frozenset({S.QUEUED}),  # only by an explicit operator retry
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.DEAD: frozenset({S.QUEUED}),  # replay
}


class TransitionRefused(Exception):
    """The job is not in a state from which this move is allowed (or was changed meanwhile)."""

    def __init__(self, message: str, *, job: Job | None = None):
        super().__init__(message)
        self.job = job


def is_allowed(from_state: str, to_state: str) -> bool:
    return to_state in ALLOWED.get(from_state, frozenset())


def job_transition(
    *,
    job_id: uuid.UUID | str,
    to: str,
    expected: Iterable[str] | str | None = None,
    reason: str = "",
    actor: str = "system",
    claim_token: uuid.UUID | None = None,
    changes: dict[str, Any] | Callable[[Job], dict[str, Any]] | None = None,
) -> Job:
    """Moves one job to `to`, or raises TransitionRefused and changes nothing.

    expected: the states the caller believes the job is in (compare-and-set).
    claim_token: for moves out of PROCESSING by a worker, the token of its claim.
    changes: other fields to set in the same update, or a function of the locked row that
    returns them (for values derived from the row, such as an appended list).
    """
    if isinstance(expected, str):
        expected = {expected}
    with transaction.atomic():
        # The row lock serialises racing workers, the sweeper and users: whoever comes
        # second sees the state the first one left and is refused.
        job = Job.objects.select_for_update().get(pk=job_id)
        from_state = job.state
        if expected is not None and from_state not in set(expected):
            raise TransitionRefused(f"job {job.id} is {from_state}, expected {'/'.join(sorted(expected))}", job=job)
        if not is_allowed(from_state, to):
            raise TransitionRefused(f"job {job.id} cannot move from {from_state} to {to}", job=job)
        if claim_token is not None and job.claim_token != claim_token:
            raise TransitionRefused(f"job {job.id} is no longer held by this worker", job=job)

        now = timezone.now()
        job.state = to
        fields = {"state", "updated_at"}
        if callable(changes):
            changes = changes(job)
        for name, value in (changes or {}).items():
            setattr(job, name, value)
            fields.add(name)
        if to == S.QUEUED:
            job.queued_at = now
            fields.add("queued_at")
        if to in (S.COMPLETED, S.FAILED, S.CANCELLED, S.DEAD):
            job.finished_at = now
            job.lease_expires_at = None
            job.claim_token = None
            fields |= {"finished_at", "lease_expires_at", "claim_token"}
        job.save(update_fields=sorted(fields))
        event = JobEvent.objects.create(job=job, from_state=from_state, to_state=to, reason=reason[:4000],
                                        attempt=job.attempts, actor=actor[:255])
        logger.info("job.transition job_id=%s from=%s to=%s attempt=%s actor=%s reason=%s",
                    job.id, from_state, to, job.attempts, actor, reason[:200])

        from .notify import job_changed

        transaction.on_commit(lambda: job_changed(job, event=event))
    return job
