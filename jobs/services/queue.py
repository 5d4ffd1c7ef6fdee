"""Queueing a job: the move to QUEUED, and its run message published after commit."""

from __future__ import annotations

import logging
import uuid

from celery import current_app
from django.db import transaction
from django.db.models import Q

from processors import get_processor

from ..errors import TransitionRefused
from ..models import Job, JobState
from ..state_machine import job_transition

logger = logging.getLogger(__name__)
S = JobState

# The task's registered name: publishing by name keeps services free of jobs.tasks.
RUN_JOB_TASK = "jobs.run_job"
DEAD_LETTER_TASK = "jobs.dead_letter"


def job_enqueue(*, job_id: uuid.UUID | str, reason: str, actor: str,
                expected: tuple[str, ...] = (S.CREATED,), changes: dict | None = None,
                current: Job | None = None, claim_token: uuid.UUID | None = None,
                where: Q | None = None) -> Job | None:
    """Moves a job to QUEUED and publishes its message after commit; None if it cannot move.

    current, claim_token, where: as for job_transition (the sweeper passes the row it read,
    the claim it saw and the condition that made it act, so that it acts on that row only).
    If the publish fails (broker down) the job stays QUEUED and the sweeper publishes it
    again later: the database, not the broker, is the source of truth.
    """
    task_id = str(uuid.uuid4())
    try:
        job = job_transition(job_id=job_id, to=S.QUEUED, expected=expected, reason=reason, actor=actor,
                             current=current, claim_token=claim_token, where=where,
                             changes=lambda row: {**queue_changes(row, task_id), **(changes or {})})
    except (TransitionRefused, Job.DoesNotExist) as exc:
        logger.info("job.enqueue_skipped job_id=%s reason=%s", job_id, exc)
        return None
    transaction.on_commit(lambda: job_publish(job=job, task_id=task_id))
    return job


def queue_changes(job: Job, task_id: str) -> dict:
    """What queuing sets besides the state: the new message's task id (the job keeps its
    last 20), and no pending retry, cancel request or republishes."""
    return {"celery_task_id": task_id, "task_ids": [*job.task_ids[-19:], task_id], "next_attempt_at": None,
            "publish_count": 1, "cancel_requested": False}


def job_publish(*, job: Job, task_id: str) -> bool:
    """Sends the run message (the job's id only), with the processor's soft and hard time limits."""
    try:
        processor = get_processor(job.job_type)
        current_app.send_task(RUN_JOB_TASK, args=[str(job.id)], task_id=task_id, retry=False,
                              soft_time_limit=processor.soft_time_limit, time_limit=processor.time_limit)
        return True
    except Exception:
        logger.warning("job.publish_failed job_id=%s (the sweeper will publish it again)", job.id, exc_info=True)
        return False


def dead_letter_publish(*, job_id: uuid.UUID | str, reason: str) -> None:
    """Parks a copy of a dead job's message on the dead-letter queue (settings route it)."""
    try:
        current_app.send_task(DEAD_LETTER_TASK, args=[str(job_id), reason[:1000]], retry=False)
    except Exception:  # the DeadLetter row is the record that matters; the queue is a copy
        logger.warning("job.dead_letter_publish_failed job_id=%s", job_id, exc_info=True)


def job_messages_waiting() -> int | None:
    """How many run messages wait in the broker's job queue (not counting those a worker has
    already taken); None if the broker cannot say. Works on Redis and RabbitMQ alike."""
    queue = current_app.amqp.router.route({}, RUN_JOB_TASK)["queue"].name
    try:
        with current_app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            with connection.channel() as channel:
                try:
                    return channel.queue_declare(queue=queue, passive=True).message_count
                except connection.channel_errors:
                    return 0  # no such queue: Redis drops an emptied one, so nothing waits
    except Exception:
        logger.warning("job.queue_depth_unknown queue=%s", queue, exc_info=True)
        return None
