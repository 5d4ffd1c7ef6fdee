"""The sweeper: finds jobs whose message or worker was lost, and moves them on.

Runs every SWEEP_INTERVAL_SECONDS from Celery beat (and as `manage.py sweep`). It is
what makes the database, not Redis, the source of truth:
- PROCESSING with an expired lease: the worker died. QUEUED again, or DEAD as a poison
  pill after JOB_MAX_WORKER_DEATHS deaths (or when attempts are used up), only if the claim
  it saw still holds the job and the lease is still expired when the row is written.
- PROCESSING with no progress for JOB_STALL_SECONDS (heartbeats, but the job does not move):
  QUEUED again, or DEAD when attempts are used up; not a worker death. Only if the claim it
  saw still holds the job and no progress was written since, judged when the row is written.
- RETRYING long past next_attempt_at: the delayed message was lost. QUEUED again.
- CREATED for JOB_STUCK_SECONDS: a row written without being queued. QUEUED.
- QUEUED for JOB_STUCK_SECONDS without being claimed, when the broker holds fewer messages
  than there are QUEUED jobs: published again (duplicates are harmless, the claim lets one
  through), at most as many as are missing, with a growing pause between republishes.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from . import metrics
from .errors import TransitionRefused
from .models import Job, JobState, stalled_before
from .services.execution import job_kill
from .services.queue import job_enqueue, job_messages_waiting, job_publish

logger = logging.getLogger(__name__)
S = JobState
BATCH = 500
ACTOR = "sweeper"


# The pause before a QUEUED job's next republish doubles, up to this many stuck-periods.
MAX_REPUBLISH_BACKOFF = 32


def republish_due(job: Job):
    """When a QUEUED job's message counts as lost again: one stuck-period after it was
    queued, then 2, 4, 8... periods after the last republish (which sets updated_at).

    The pause grows from the last publish, not from queued_at: measured from queued_at,
    every job of a long backlog would be republished every period, and those duplicates
    lengthen the very backlog that keeps the jobs waiting.
    """
    periods = min(2 ** max(job.publish_count - 1, 0), MAX_REPUBLISH_BACKOFF)
    return job.updated_at + timedelta(seconds=settings.JOB_STUCK_SECONDS * periods)


def sweep() -> dict[str, int]:
    counts = {"expired_leases": 0, "poison_pills": 0, "stalled": 0, "overdue_retries": 0, "stuck_created": 0,
              "republished": 0}
    now = timezone.now()
    stuck = now - timedelta(seconds=settings.JOB_STUCK_SECONDS)

    db_started = database_started_at()
    # For one lease after a database restart, live workers get the time to heartbeat again.
    leases_due = db_started is None or now - db_started >= timedelta(seconds=settings.JOB_LEASE_SECONDS)
    # Each query names its order (or none): the model's default, -created_at, would have the
    # planner walk the created_at index over all history looking for a handful of rows.
    for job in (Job.objects.filter(state=S.PROCESSING, lease_expires_at__lt=now)
                .order_by("lease_expires_at")[:BATCH if leases_due else 0]):
        outcome = lease_expired(job=job, now=now, db_started=db_started)
        if outcome:
            counts[outcome] += 1

    # The same pause after a database restart: progress writes failed while it was away.
    for job in (Job.objects.filter(state=S.PROCESSING, updated_at__lt=stalled_before(now))
                .order_by()[:BATCH if leases_due else 0]):
        outcome = stalled(job=job, now=now)
        if outcome:
            counts[outcome] += 1

    for job in Job.objects.filter(state=S.RETRYING, next_attempt_at__lt=now - retry_grace()).order_by()[:BATCH]:
        if retry_overdue(job=job, now=now):
            counts["overdue_retries"] += 1

    for job in Job.objects.filter(state=S.CREATED, created_at__lt=stuck).order_by()[:BATCH]:
        if job_enqueue(job_id=job.id, expected=(S.CREATED,), reason="never queued", actor=ACTOR, current=job):
            counts["stuck_created"] += 1

    counts["republished"] = republish_lost(now=now)

    if any(counts.values()):
        logger.info("sweep %s", " ".join(f"{k}={v}" for k, v in counts.items()))
        metrics.sweep_recorded(counts)
    return counts


def database_started_at() -> datetime | None:
    """When the PostgreSQL server started: a lease that ran out across a restart is the
    database's doing, not the worker's."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_postmaster_start_time()")
        return cursor.fetchone()[0]


def lease_expired(*, job: Job, now: datetime, db_started: datetime | None = None) -> str | None:
    """A PROCESSING row the sweep read with its lease expired at `now`: QUEUED again, or DEAD.
    Returns which (the counter's name), or None if the job moved on meanwhile.

    The move carries the claim the sweep saw and the expired lease as conditions of its own
    update: a claim made since, or a heartbeat that extended the lease, makes it change nothing.
    """
    # A worker last heard from before the database restarted lost its job to the restart
    # (its writes failed), not to something the job did: no death is counted.
    restart = db_started is not None and job.heartbeat_at is not None and job.heartbeat_at < db_started
    deaths = job.worker_deaths + (0 if restart else 1)
    reason = (f"lease expired across a database restart (worker {job.worker or '?'}); not a worker death"
              if restart else
              f"lease expired (worker {job.worker or '?'} stopped heartbeating); worker deaths: {deaths}")
    seen = {"current": job, "claim_token": job.claim_token, "where": Q(lease_expires_at__lt=now)}
    try:
        if deaths >= settings.JOB_MAX_WORKER_DEATHS or job.attempts >= job.max_attempts:
            pill = deaths >= settings.JOB_MAX_WORKER_DEATHS
            why = "poison pill: it killed its worker" if pill else "attempts exhausted"
            job_kill(job_id=job.id, expected=S.PROCESSING, actor=ACTOR, reason=f"{why} ({reason})",
                     code="poison_pill" if pill else "attempts_exhausted", **seen)
            outcome = "poison_pills"
        elif job_enqueue(job_id=job.id, expected=(S.PROCESSING,), reason=reason, actor=ACTOR,
                         changes={"worker_deaths": deaths, "claim_token": None, "lease_expires_at": None}, **seen):
            outcome = "expired_leases"
        else:
            return None
    except TransitionRefused:
        return None  # it moved on while we looked
    if not restart:
        metrics.worker_death_recorded(job_type=job.job_type)
    return outcome


def stalled(*, job: Job, now: datetime) -> str | None:
    """A PROCESSING row the sweep read with no progress since before stalled_before(now): QUEUED
    again, or DEAD when its attempts are used up. Returns which, or None if it moved on meanwhile.

    Its worker may be alive (it heartbeats) but hung: the re-queue revokes its claim, so its
    next progress call stops it. The claim seen and the missing progress are conditions of
    the update itself, so progress written since, or a new claim, makes it change nothing.
    """
    reason = (f"stalled: no progress for {int((now - job.updated_at).total_seconds())} s "
              f"(worker {job.worker or '?'}); not a worker death")
    seen = {"current": job, "claim_token": job.claim_token, "where": Q(updated_at__lt=stalled_before(now))}
    try:
        if job.attempts >= job.max_attempts:
            job_kill(job_id=job.id, expected=S.PROCESSING, actor=ACTOR, reason=f"attempts exhausted ({reason})",
                     code="attempts_exhausted", **seen)
            return "stalled"
        if job_enqueue(job_id=job.id, expected=(S.PROCESSING,), reason=reason, actor=ACTOR,
                       changes={"claim_token": None, "lease_expires_at": None}, **seen):
            return "stalled"
    except TransitionRefused:
        pass  # it moved on while we looked
    return None


def retry_grace() -> timedelta:
    """How long past next_attempt_at a RETRYING job's delayed message counts as lost."""
    return timedelta(seconds=max(10, settings.JOB_STUCK_SECONDS // 2))


def retry_overdue(*, job: Job, now: datetime) -> bool:
    """A RETRYING row the sweep read long past its next_attempt_at: QUEUED again. The overdue
    time is a condition of the update, so a job that has since failed again and waits for a
    later retry is left to wait."""
    return job_enqueue(job_id=job.id, expected=(S.RETRYING,), reason="retry overdue: message lost", actor=ACTOR,
                       current=job, where=Q(next_attempt_at__lt=now - retry_grace())) is not None


def republish_lost(*, now: datetime) -> int:
    """Publishes again the run messages of QUEUED jobs that the broker no longer holds.

    The jobs QUEUED that outnumber the messages waiting in the broker lost theirs (Redis
    restarted empty, a publish failed); the oldest are those, as the broker hands out the
    oldest first. So at most that many are republished, oldest first, each only when its
    growing pause is over. A backlog whose messages all wait gets no duplicates.
    """
    stuck = now - timedelta(seconds=settings.JOB_STUCK_SECONDS)
    due = [job for job in Job.objects.filter(state=S.QUEUED, queued_at__lt=stuck).order_by("queued_at")[:BATCH]
           if now >= republish_due(job)]
    if not due:
        return 0
    waiting = job_messages_waiting()
    # A broker that cannot say gets every due job republished: the database decides.
    lost = len(due) if waiting is None else Job.objects.filter(state=S.QUEUED).count() - waiting
    republished = 0
    for job in due[:max(lost, 0)]:
        updated = Job.objects.filter(pk=job.pk, state=S.QUEUED, publish_count=job.publish_count).update(
            publish_count=F("publish_count") + 1, updated_at=now)
        if updated and job_publish(job=job, task_id=job.celery_task_id or str(job.id)):
            republished += 1
            logger.info("job.republished job_id=%s publish_count=%s", job.id, job.publish_count + 1)
    return republished
