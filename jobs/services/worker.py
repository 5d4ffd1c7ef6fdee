"""What a Celery worker's main process does for jobs its pool processes held: give a job
back when the worker shuts down, and give up the lease of a pool process that died.

The main process does not know a job's claim token; it knows which job a pool process was
running and the worker's name, which the claim wrote into the row. A job held under this
worker's name by a pool process that is gone (or going) is the one to act on: while it is
PROCESSING no other process can claim it.
"""

from __future__ import annotations

import logging
import uuid

from django.utils import timezone

from ..models import Job, JobState
from .queue import job_enqueue

logger = logging.getLogger(__name__)
S = JobState


def job_hand_back(*, job_id: uuid.UUID | str, worker: str, reason: str) -> bool:
    """QUEUED again at once, without waiting for the lease and without counting a worker
    death: the worker is shutting down, the job did nothing wrong. False if this worker no
    longer holds it."""
    job = Job.objects.filter(pk=job_id, state=S.PROCESSING, worker=worker[:255]).first()
    if job is None or job.claim_token is None:
        return False
    handed = job_enqueue(job_id=job.id, expected=(S.PROCESSING,), reason=reason, actor=f"worker:{worker}",
                         current=job, claim_token=job.claim_token,
                         changes={"claim_token": None, "lease_expires_at": None})
    if handed is not None:
        logger.info("job.handed_back job_id=%s worker=%s", job.id, worker)
    return handed is not None


def job_lease_give_up(*, job_id: uuid.UUID | str, worker: str) -> bool:
    """Ends the lease now: the pool process running the job died (the job killed it, or hit
    its hard time limit), so the sweeper's next pass re-queues it and counts the death,
    without waiting for the lease to run out. False if this worker no longer holds it."""
    now = timezone.now()
    return bool(Job.objects.filter(pk=job_id, state=S.PROCESSING, worker=worker[:255],
                                   lease_expires_at__gt=now).update(lease_expires_at=now))
