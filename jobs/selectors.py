"""Read-side queries. Ownership is enforced here: a user only ever sees their own jobs."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from .errors import JobError
from .models import TERMINAL_STATES, DeadLetter, Job, JobState


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
    return qs.order_by("-created_at")


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
    return qs.order_by("-died_at")


def job_list_live(*, user, recent_seconds: int = 600, limit: int = 100) -> list[Job]:
    """What a reconnecting page must catch up on: the user's unfinished jobs and those that
    finished in the last `recent_seconds` (a final state reached while it was away)."""
    since = timezone.now() - timedelta(seconds=recent_seconds)
    qs = Job.objects.filter(owner=user).filter(~Q(state__in=TERMINAL_STATES) | Q(updated_at__gte=since))
    return list(qs.order_by("-created_at")[:limit])


def jobs_finished_before(*, cutoff: datetime) -> QuerySet[Job]:
    """Terminal jobs that finished (or, for rows without finished_at, last changed) before cutoff."""
    old = Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, updated_at__lt=cutoff)
    return Job.objects.filter(old, state__in=TERMINAL_STATES).order_by("created_at")
