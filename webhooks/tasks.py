"""Celery tasks of the webhooks app, thin callers of its services (routes: CELERY_TASK_ROUTES)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError

from . import services

logger = logging.getLogger(__name__)


# max_retries=None: the attempt limit is WEBHOOK_MAX_ATTEMPTS, counted on the row, which a
# replay resets; Celery's own count would carry over.
@shared_task(name="webhooks.deliver", bind=True, acks_late=True, ignore_result=True, max_retries=None,
             soft_time_limit=60, time_limit=90)
def deliver(self, delivery_id: str, round: int, attempt: int) -> None:
    try:
        delay = services.delivery_attempt(delivery_id=delivery_id, round=round, attempt=attempt)
    except DatabaseError as exc:
        # The database is away: the row still waits for this attempt; the message comes back.
        logger.warning("webhook.database_unavailable delivery_id=%s: %s", delivery_id, exc)
        raise self.retry(countdown=services.retry_delay(1)) from None
    if delay is not None:
        raise self.retry(args=[delivery_id, round, attempt + 1], countdown=delay)


@shared_task(name="webhooks.resume", acks_late=True, ignore_result=True, soft_time_limit=60, time_limit=90)
def resume() -> int:
    return services.deliveries_resume()
