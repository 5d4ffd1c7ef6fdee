"""The job state machine: the allowed moves, and the one function that makes them.

Every state change in the platform goes through `job_transition`. It reads the row (or
takes the caller's copy), checks the move against ALLOWED and the caller's expectations,
then, in one transaction, updates the row only if it still has the version it was read at
(compare-and-set) and writes the JobEvent. The live notification is sent after commit.
A late or duplicate message therefore cannot move a job backwards or complete it twice.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .errors import TransitionRefused
from .models import TERMINAL_STATES, Job, JobEvent, JobState
from .notify import job_changed
from .signals import job_moved

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

# Reads and compare-and-sets before a transition gives up on a row that keeps changing.
CAS_ATTEMPTS = 20

Changes = dict[str, Any] | Callable[[Job], dict[str, Any]] | None


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
    changes: Changes = None,
    current: Job | None = None,
    where: Q | None = None,
) -> Job:
    """Moves one job to `to`, or raises TransitionRefused and changes nothing.

    expected: the states the caller believes the job is in.
    claim_token: for moves out of PROCESSING by a worker, the token of its claim; the update
    matches it too, so a worker whose claim was replaced changes nothing.
    changes: other fields to set in the same update, or a function of the row as read that
    returns them (for values derived from the row, such as an appended list).
    current: the caller's copy of the row as it last wrote or read it; tried instead of a
    fresh read. A stale copy costs one update that matches nothing, never a wrong move.
    It is not modified.
    where: conditions the row must also meet, in the same update (a lease still expired, a
    retry that is due): columns that change without a new version, or a time that passes,
    are judged by the database at the moment of the move. A row that fails them is refused.
    """
    expected = {expected} if isinstance(expected, str) else set(expected) if expected is not None else None
    job = None
    missed_at = None  # the version of the row the last update did not match
    for _ in range(CAS_ATTEMPTS):
        if current is not None and str(current.pk) == str(job_id):
            job, current = copy.copy(current), None
        else:
            job = Job.objects.get(pk=job_id)
        if where is not None and job.version == missed_at:
            # Still the version the update missed: the row failed the conditions, not the race.
            raise TransitionRefused(f"job {job.id} ({job.state}) no longer meets the conditions of the move to {to}",
                                    job=job)
        _check(job, to=to, expected=expected, claim_token=claim_token)
        moved = _compare_and_set(job, to=to, changes=changes(job) if callable(changes) else changes,
                                 claim_token=claim_token, where=where, reason=reason, actor=actor)
        if moved is not None:
            return moved
        missed_at = job.version
    raise TransitionRefused(f"job {job_id} kept changing under {CAS_ATTEMPTS} attempts to move it to {to}", job=job)


def _check(job: Job, *, to: str, expected: set[str] | None, claim_token: uuid.UUID | None) -> None:
    if expected is not None and job.state not in expected:
        raise TransitionRefused(f"job {job.id} is {job.state}, expected {'/'.join(sorted(expected))}", job=job)
    if not is_allowed(job.state, to):
        raise TransitionRefused(f"job {job.id} cannot move from {job.state} to {to}", job=job)
    if claim_token is not None and job.claim_token != claim_token:
        raise TransitionRefused(f"job {job.id} is no longer held by this worker", job=job)


def _move_values(job: Job, to: str, changes: dict[str, Any] | None, now) -> dict[str, Any]:
    """Every column a move to `to` sets: the caller's changes, the state and its version, and
    what the target state implies (a queue time; a finished job holds no lease)."""
    values = {**(changes or {}), "state": to, "updated_at": now, "version": job.version + 1}
    if to == S.QUEUED:
        values["queued_at"] = now
    if to in TERMINAL_STATES:
        values |= {"finished_at": now, "lease_expires_at": None, "claim_token": None}
    return values


def _compare_and_set(job: Job, *, to: str, changes: dict[str, Any] | None, claim_token: uuid.UUID | None,
                     where: Q | None, reason: str, actor: str) -> Job | None:
    """Writes the move if the row is still at the version `job` holds; None if it is not."""
    from_state = job.state
    values = _move_values(job, to, changes, timezone.now())
    held = {"claim_token": claim_token} if claim_token is not None else {}
    # No savepoint inside a caller's transaction: a failure here fails that transaction.
    with transaction.atomic(savepoint=False):
        if not Job.objects.filter(where or Q(), pk=job.pk, version=job.version, **held).update(**values):
            return None
        for name, value in values.items():
            setattr(job, name, value)
        event = JobEvent.objects.create(job_id=job.pk, from_state=from_state, to_state=to, reason=reason[:4000],
                                        attempt=job.attempts, actor=actor[:255])
    return _moved(job, event)


def _moved(job: Job, event: JobEvent, *, earlier: list[JobEvent] = ()) -> Job:
    logger.info("job.transition job_id=%s from=%s to=%s attempt=%s actor=%s reason=%s",
                job.id, event.from_state, event.to_state, job.attempts, event.actor, event.reason[:200])

    def committed() -> None:
        job_changed(job, event=event)
        for each in [*earlier, event]:
            for receiver, error in job_moved.send_robust(sender=Job, job=job, event=each):
                if error is not None:
                    logger.error("job_moved receiver %r failed for job %s: %r", receiver, job.id, error)

    transaction.on_commit(committed)
    return job


def job_insert(*, job: Job, actor: str, then: str | None = None, then_actor: str = "system",
               changes: dict[str, Any] | None = None) -> list[JobEvent]:
    """Writes a new job, CREATED, with its event; with `then`, already moved on to that state
    (as ALLOWED permits from CREATED) with its own event, in the same transaction. Nobody
    can see the row before both are written, so the move needs no compare-and-set: a job
    created outside a caller's transaction is queued at once. Returns the events, oldest
    first."""
    if job.state != S.CREATED:
        raise TransitionRefused(f"a new job starts CREATED, not {job.state}", job=job)
    events = [JobEvent(job=job, from_state="", to_state=S.CREATED, reason="created", attempt=job.attempts,
                       actor=actor[:255])]
    if then is not None:
        if not is_allowed(S.CREATED, then):
            raise TransitionRefused(f"a new job cannot move from CREATED to {then}", job=job)
        for name, value in _move_values(job, then, changes, timezone.now()).items():
            setattr(job, name, value)
        events.append(JobEvent(job=job, from_state=S.CREATED, to_state=then, reason="created",
                               attempt=job.attempts, actor=then_actor[:255]))
    # A savepoint inside a caller's transaction: a refused insert (a reused Idempotency-Key)
    # leaves that transaction usable.
    with transaction.atomic():
        job.save(force_insert=True)
        JobEvent.objects.bulk_create(events)
    _moved(job, events[-1], earlier=events[:-1])
    return events
