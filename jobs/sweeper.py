"""The sweeper: finds jobs whose message or worker was lost, and moves them on.

Runs every SWEEP_INTERVAL_SECONDS from Celery beat (and as `manage.py sweep`). It is
what makes the database, not Redis, the source of truth:
- PROCESSING with an expired lease: the worker died. QUEUED again, or DEAD as a poison
  pill after JOB_MAX_WORKER_DEATHS deaths (or when attempts are used up).
- RETRYING long past next_attempt_at: the delayed message was lost. QUEUED again.
- CREATED for JOB_STUCK_SECONDS: a row written without being queued. QUEUED.
- QUEUED for JOB_STUCK_SECONDS without being claimed: published again (duplicates are
  harmless, the claim lets one through), with a growing pause between republishes.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from .errors import TransitionRefused
from .models import Job, JobState
from .services.execution import job_kill
from .services.queue import job_enqueue, job_publish

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
    counts = {"expired_leases": 0, "poison_pills": 0, "overdue_retries": 0, "stuck_created": 0, "republished": 0}
    now = timezone.now()
    stuck = now - timedelta(seconds=settings.JOB_STUCK_SECONDS)

    for job in Job.objects.filter(state=S.PROCESSING, lease_expires_at__lt=now)[:BATCH]:
        deaths = job.worker_deaths + 1
        reason = f"lease expired (worker {job.worker or '?'} stopped heartbeating); worker deaths: {deaths}"
        try:
            if deaths >= settings.JOB_MAX_WORKER_DEATHS or job.attempts >= job.max_attempts:
                why = ("poison pill: it killed its worker" if deaths >= settings.JOB_MAX_WORKER_DEATHS
                       else "attempts exhausted")
                code = "poison_pill" if deaths >= settings.JOB_MAX_WORKER_DEATHS else "attempts_exhausted"
                job_kill(job_id=job.id, expected=S.PROCESSING, claim_token=job.claim_token, actor=ACTOR,
                         reason=f"{why} ({reason})", code=code)
                counts["poison_pills"] += 1
            elif job_enqueue(job_id=job.id, expected=(S.PROCESSING,), reason=reason, actor=ACTOR,
                             changes={"worker_deaths": deaths, "claim_token": None,
                                      "lease_expires_at": None}, current=job):
                counts["expired_leases"] += 1
        except TransitionRefused:
            continue  # it moved on while we looked

    grace = timedelta(seconds=max(10, settings.JOB_STUCK_SECONDS // 2))
    for job in Job.objects.filter(state=S.RETRYING, next_attempt_at__lt=now - grace)[:BATCH]:
        if job_enqueue(job_id=job.id, expected=(S.RETRYING,), reason="retry overdue: message lost", actor=ACTOR,
                       current=job):
            counts["overdue_retries"] += 1

    for job in Job.objects.filter(state=S.CREATED, created_at__lt=stuck)[:BATCH]:
        if job_enqueue(job_id=job.id, expected=(S.CREATED,), reason="never queued", actor=ACTOR, current=job):
            counts["stuck_created"] += 1

    for job in Job.objects.filter(state=S.QUEUED, queued_at__lt=stuck)[:BATCH]:
        if now < republish_due(job):
            continue
        updated = Job.objects.filter(pk=job.pk, state=S.QUEUED, publish_count=job.publish_count).update(
            publish_count=F("publish_count") + 1, updated_at=now)
        if updated and job_publish(job=job, task_id=job.celery_task_id or str(job.id)):
            counts["republished"] += 1
            logger.info("job.republished job_id=%s publish_count=%s", job.id, job.publish_count + 1)

    if any(counts.values()):
        logger.info("sweep %s", " ".join(f"{k}={v}" for k, v in counts.items()))
    return counts
