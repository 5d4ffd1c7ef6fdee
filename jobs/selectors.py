"""Read-side queries. Ownership is enforced here: a user only ever sees their own jobs."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from .errors import JobError
from .models import TERMINAL_STATES, DeadLetter, Job, JobState

ACTIVE_STATES = sorted(set(JobState.values) - TERMINAL_STATES)


def job_list(*, user, state: str | None = None, job_type: str | None = None,
             created_after: datetime | None = None, created_before: datetime | None = None) -> QuerySet[Job]:
    qs = Job.objects.filter(owner=user)
    if state:
        if state not in JobState.values:
            raise JobError(f"unknown state {state!r}; one of {', '.join(JobState.values)}", code="invalid_filter")
        qs = qs.filter(state=state)
    if job_type:
        qs = qs.filter(job_type=job_type)
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    # The order of the (owner, ..., -created_at) indexes; the id makes it total.
    return qs.order_by("-created_at", "-id")


def job_get(*, user, job_id: uuid.UUID | str, allow_staff: bool = False) -> Job:
    """The user's job, or JobError 404: another user's job is indistinguishable from none."""
    try:
        job_id = uuid.UUID(str(job_id))
    except ValueError:
        raise JobError("job not found", code="not_found", status=404) from None
    qs = Job.objects.all() if (allow_staff and user.is_staff) else Job.objects.filter(owner=user)
    job = qs.filter(pk=job_id).first()
    if job is None:
        raise JobError("job not found", code="not_found", status=404)
    return job


def dead_letter_list(*, pending_only: bool = False) -> QuerySet[DeadLetter]:
    qs = DeadLetter.objects.select_related("job", "job__owner")
    if pending_only:
        qs = qs.filter(job__state=JobState.DEAD)
    return qs.order_by("-died_at", "-id")


def job_list_live(*, user, recent_seconds: int = 600, limit: int = 100) -> list[Job]:
    """What a reconnecting page must catch up on: the user's unfinished jobs and those that
    finished in the last `recent_seconds` (a final state reached while it was away)."""
    since = timezone.now() - timedelta(seconds=recent_seconds)
    # Two reads, each one index range (unfinished: job_owner_state_created; recently finished:
    # job_finished), where one OR over the owner's rows would read all of their history.
    mine = Job.objects.filter(owner=user).order_by("-created_at", "-id")
    unfinished = list(mine.filter(state__in=ACTIVE_STATES)[:limit])
    finished = list(mine.filter(state__in=sorted(TERMINAL_STATES), finished_at__gte=since)[:limit])
    jobs = sorted(unfinished + finished, key=lambda job: (job.created_at, job.id), reverse=True)
    return jobs[:limit]


def jobs_finished_before(*, cutoff: datetime, states=TERMINAL_STATES) -> QuerySet[Job]:
    """Jobs in `states` (terminal ones) that finished before cutoff, oldest first: one range of
    the job_finished index. Every move to a terminal state sets finished_at."""
    return Job.objects.filter(state__in=sorted(states), finished_at__lt=cutoff).order_by("finished_at")
