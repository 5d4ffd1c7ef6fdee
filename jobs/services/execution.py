"""The worker's side of a job: claim, heartbeat, progress, and every way an attempt ends."""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..errors import TransitionRefused
from ..models import DeadLetter, Job, JobState
from ..notify import job_changed
from ..state_machine import job_transition
from .queue import dead_letter_publish

logger = logging.getLogger(__name__)
S = JobState


def claimable_at(now: datetime) -> Q:
    """The rows a claim may take at `now`: QUEUED, or RETRYING with its backoff over."""
    return Q(state=S.QUEUED) | Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


@dataclass(frozen=True)
class Claim:
    """What a claim attempt found: the job, now this worker's, or why not."""

    job: Job | None = None
    # A RETRYING job whose backoff is not over: when it is. The message is to come back then.
    due_at: datetime | None = None


def job_try_claim(*, job_id: uuid.UUID | str, worker: str) -> Claim:
    """Takes a QUEUED job, or a RETRYING one whose next_attempt_at has come, for this worker.

    The due time is a condition of the claim's own update, so a retry is never taken early,
    whatever message or sweep asks for it.
    """
    now = timezone.now()

    def claim(row: Job) -> dict:
        return {"claim_token": uuid.uuid4(), "worker": worker[:255], "attempts": row.attempts + 1,
                "started_at": now, "heartbeat_at": now, "next_attempt_at": None, "progress_bytes": 0,
                "lease_expires_at": now + timedelta(seconds=settings.JOB_LEASE_SECONDS)}

    try:
        return Claim(job=job_transition(job_id=job_id, to=S.PROCESSING, expected=(S.QUEUED, S.RETRYING),
                                        reason="claimed", actor=f"worker:{worker}", changes=claim,
                                        where=claimable_at(now)))
    except TransitionRefused as exc:
        logger.info("job.claim_refused job_id=%s worker=%s: %s", job_id, worker, exc)
        row = exc.job
        if row is not None and row.state == S.RETRYING and row.next_attempt_at and row.next_attempt_at > now:
            return Claim(due_at=row.next_attempt_at)
        return Claim()
    except Job.DoesNotExist:
        return Claim()


def job_claim(*, job_id: uuid.UUID | str, worker: str) -> Job | None:
    """The job, claimed for this worker; None if someone else has it, it is over, or its retry is not due."""
    return job_try_claim(job_id=job_id, worker=worker).job


def job_heartbeat(*, job_id: uuid.UUID | str, claim_token: uuid.UUID) -> bool:
    """Extends the lease; False if the job is no longer this worker's."""
    now = timezone.now()
    return bool(Job.objects.filter(pk=job_id, state=S.PROCESSING, claim_token=claim_token).update(
        heartbeat_at=now, lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS)))


def job_record_progress(*, job: Job, bytes_read: int) -> bool:
    """Writes progress; returns True if the worker must stop: its owner asked to cancel the
    job, or the job is no longer this worker's (either way the update matches nothing)."""
    now = timezone.now()
    updated = Job.objects.filter(pk=job.pk, state=S.PROCESSING, claim_token=job.claim_token,
                                 cancel_requested=False).update(progress_bytes=bytes_read, updated_at=now)
    if not updated:
        return True
    job.progress_bytes, job.updated_at = bytes_read, now
    job_changed(job)
    return False


def job_held(*, job: Job) -> bool:
    """Whether the job is still PROCESSING under this worker's claim."""
    return Job.objects.filter(pk=job.pk, state=S.PROCESSING, claim_token=job.claim_token).exists()


def job_must_stop(*, job: Job) -> bool:
    """True if the worker running the job must stop: its owner asked to cancel it, or the
    job is no longer this worker's. One indexed read, for the runner's cancel poll."""
    return not Job.objects.filter(pk=job.pk, state=S.PROCESSING, claim_token=job.claim_token,
                                  cancel_requested=False).exists()


def held(job: Job) -> uuid.UUID:
    """The claim a worker-side move carries: the one this worker won, which the move's update
    matches, so a worker whose claim was replaced changes nothing. A copy without one is refused."""
    if job.claim_token is None:
        raise TransitionRefused(f"job {job.id} is not held by this worker", job=job)
    return job.claim_token


def job_complete(*, job: Job, result: dict, result_keys: list[str], actor: str) -> Job:
    return job_transition(job_id=job.id, to=S.COMPLETED, expected=S.PROCESSING, claim_token=held(job),
                          reason="result written", actor=actor, current=job,
                          changes={"result": result, "result_keys": result_keys, "error_code": "",
                                   "error_message": "", "progress_bytes": job.input_size})


def job_fail(*, job: Job, code: str, message: str, actor: str) -> Job:
    return job_transition(job_id=job.id, to=S.FAILED, expected=S.PROCESSING, claim_token=held(job),
                          reason=message, actor=actor, current=job,
                          changes={"error_code": code[:64], "error_message": message})


def job_cancelled_by_worker(*, job: Job, actor: str) -> Job:
    return job_transition(job_id=job.id, to=S.CANCELLED, expected=S.PROCESSING, claim_token=held(job),
                          reason="cancelled at the next chunk", actor=actor, current=job,
                          changes={"error_code": "cancelled", "error_message": "cancelled by request"})


def retry_delay(attempt: int) -> float:
    """Exponential backoff with full jitter, capped: base * 2^(attempt-1), random in [half, all]."""
    ceiling = min(settings.JOB_RETRY_BACKOFF_MAX, settings.JOB_RETRY_BACKOFF_BASE * (2 ** max(0, attempt - 1)))
    return round(random.uniform(ceiling / 2, ceiling), 3)


def job_after_transient_error(*, job: Job, error: BaseException, traceback: str,
                              actor: str) -> tuple[Job, float | None]:
    """RETRYING with a backoff if attempts remain, else DEAD. Returns (job, delay or None)."""
    message = f"{type(error).__name__}: {error}"[:2000]
    if job.attempts >= job.max_attempts:
        return job_kill(job_id=job.id, expected=S.PROCESSING, claim_token=held(job), actor=actor,
                        reason=f"attempts exhausted ({job.attempts}/{job.max_attempts}); last error: {message}",
                        traceback=traceback, code="attempts_exhausted"), None
    delay = retry_delay(job.attempts)
    job = job_transition(job_id=job.id, to=S.RETRYING, expected=S.PROCESSING, claim_token=held(job),
                         reason=f"transient error, retry in {delay:.1f}s: {message}", actor=actor, current=job,
                         changes={"error_code": "transient_error", "error_message": message, "claim_token": None,
                                  "lease_expires_at": None,
                                  "next_attempt_at": timezone.now() + timedelta(seconds=delay)})
    return job, delay


def job_kill(*, job_id: uuid.UUID | str, expected: str | tuple[str, ...], reason: str, actor: str,
             traceback: str = "", code: str = "dead", claim_token: uuid.UUID | None = None,
             current: Job | None = None, where: Q | None = None) -> Job:
    """DEAD, with a dead-letter row, and the message parked on the dead-letter queue.

    claim_token, current, where: as for job_transition (the sweeper passes the claim and the
    expired lease it saw)."""
    with transaction.atomic():
        job = job_transition(job_id=job_id, to=S.DEAD, expected=expected, claim_token=claim_token, reason=reason,
                             actor=actor, current=current, where=where,
                             changes={"error_code": code, "error_message": reason[:2000]})
        DeadLetter.objects.update_or_create(job=job, defaults={
            "reason": reason, "traceback": traceback[-20000:], "attempts": job.attempts, "died_at": timezone.now()})
        transaction.on_commit(lambda: dead_letter_publish(job_id=job.id, reason=reason))
    return job
