"""Webhook services: endpoints, the signing secret and its rotation, deliveries made from job
events, each delivery attempt (signed, sent, recorded, retried) and replays.

A delivery is attempted by the `webhooks.deliver` task, published by name so that these
services never import the tasks. Each message names the attempt it is for; an attempt
claims the row with a conditional update on that number, so a duplicate or late message
finds the row moved on and sends nothing.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from jobplatform import destinations
from jobs.models import TERMINAL_STATES, Job, JobEvent

from . import payloads, signing, transport
from .errors import WebhookError
from .models import Delivery, DeliveryAttempt, DeliveryState, Endpoint, EventFilter, SigningSecret

logger = logging.getLogger(__name__)

DELIVER_TASK = "webhooks.deliver"
MAX_GRACE_SECONDS = 7 * 24 * 3600
RESUME_BATCH = 500


# --- endpoints ------------------------------------------------------------------------------

def _checked_url(url: str) -> str:
    try:
        destinations.check(url)
    except destinations.DestinationRefused as exc:
        raise WebhookError(f"url: {exc.message}", code=exc.code, details={"url": [exc.message]}) from None
    return url


def endpoint_create(*, owner, url: str, events: str = EventFilter.TERMINAL, enabled: bool = True,
                    description: str = "") -> Endpoint:
    if Endpoint.objects.filter(owner=owner).count() >= settings.WEBHOOK_MAX_ENDPOINTS_PER_USER:
        raise WebhookError(f"at most {settings.WEBHOOK_MAX_ENDPOINTS_PER_USER} endpoints per user",
                           code="too_many_endpoints", status=409)
    endpoint = Endpoint.objects.create(owner=owner, url=_checked_url(url), events=events, enabled=enabled,
                                       description=description)
    secret_get(user=owner)  # the secret its deliveries are signed with exists from now on
    logger.info("webhook.endpoint_created endpoint_id=%s owner=%s", endpoint.pk, owner.pk)
    return endpoint


def endpoint_update(*, endpoint: Endpoint, url: str | None = None, events: str | None = None,
                    enabled: bool | None = None, description: str | None = None) -> Endpoint:
    if url is not None:
        endpoint.url = _checked_url(url)
    if events is not None:
        endpoint.events = events
    if enabled is not None:
        endpoint.enabled = enabled
    if description is not None:
        endpoint.description = description
    endpoint.save()
    return endpoint


def endpoint_delete(*, endpoint: Endpoint) -> None:
    endpoint.delete()  # its deliveries stay, with their URL, for the record


# --- the signing secret ---------------------------------------------------------------------

def secret_get(*, user) -> SigningSecret:
    row, _ = SigningSecret.objects.get_or_create(user=user, defaults={"secret": signing.secret_generate()})
    return row


def secret_rotate(*, user, grace_seconds: int | None = None) -> SigningSecret:
    """A new secret; the one it replaces keeps signing beside it for `grace_seconds`
    (default WEBHOOK_SECRET_GRACE_SECONDS; 0 retires it at once, e.g. after a leak)."""
    grace = settings.WEBHOOK_SECRET_GRACE_SECONDS if grace_seconds is None else grace_seconds
    if not 0 <= grace <= MAX_GRACE_SECONDS:
        raise WebhookError(f"grace_seconds must be 0 to {MAX_GRACE_SECONDS}", code="invalid",
                           details={"grace_seconds": [f"0 to {MAX_GRACE_SECONDS}"]})
    secret_get(user=user)
    now = timezone.now()
    with transaction.atomic():
        # Locked: two rotations at once must not both keep the same secret as the previous one.
        row = SigningSecret.objects.select_for_update().get(user=user)
        row.previous_secret, row.secret = row.secret, signing.secret_generate()
        row.previous_valid_until = now + timedelta(seconds=grace)
        row.rotated_at = now
        row.save()
    logger.info("webhook.secret_rotated owner=%s grace_seconds=%s", user.pk, grace)
    return row


def secrets_in_use(row: SigningSecret, *, now: datetime) -> list[str]:
    previous_valid = bool(row.previous_secret) and row.previous_valid_until is not None and (
        row.previous_valid_until > now)
    return [row.secret, row.previous_secret] if previous_valid else [row.secret]


# --- deliveries from job events ---------------------------------------------------------------

def deliveries_create_for_event(*, job: Job, event: JobEvent) -> list[Delivery]:
    """One delivery per URL that wants this event: the owner's enabled endpoints (terminal
    states, or every state where they ask for it) and, for a terminal state, the job's own
    callback_url. Runs after the move committed, in the process that made it."""
    terminal = event.to_state in TERMINAL_STATES
    endpoints = Endpoint.objects.filter(owner_id=job.owner_id, enabled=True)
    if not terminal:
        endpoints = endpoints.filter(events=EventFilter.ALL)
    targets: dict[str, Endpoint | None] = {endpoint.url: endpoint for endpoint in endpoints}
    if terminal and job.callback_url:
        targets.setdefault(job.callback_url, None)
    if not targets:
        return []
    body = payloads.job_event_body(job=job, event=event)
    now = timezone.now()
    rows = [Delivery(owner_id=job.owner_id, job=job, job_event=event, endpoint=endpoint, url=url,
                     event_type=payloads.event_type(event.to_state), message_id=f"msg_{uuid.uuid4().hex}",
                     body=body, next_attempt_at=now) for url, endpoint in targets.items()]
    # A second announcement of the same event conflicts and is skipped; its message finds no row.
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    SigningSecret.objects.get_or_create(user_id=job.owner_id, defaults={"secret": signing.secret_generate()})
    for row in rows:
        delivery_publish(delivery_id=row.pk, round=0, attempt=0)
    logger.info("webhook.deliveries_created job_id=%s event=%s count=%s", job.id, event.to_state, len(rows))
    return rows


def delivery_publish(*, delivery_id: uuid.UUID | str, round: int, attempt: int, countdown: float | None = None) -> bool:
    try:
        current_app.send_task(DELIVER_TASK, args=[str(delivery_id), round, attempt], countdown=countdown,
                              retry=False)
        return True
    except Exception:
        logger.warning("webhook.publish_failed delivery_id=%s (deliveries_resume publishes it again)", delivery_id,
                       exc_info=True)
        return False


def retry_delay(attempts_made: int) -> float:
    """Doubling from WEBHOOK_RETRY_BACKOFF_BASE, capped at WEBHOOK_RETRY_BACKOFF_MAX, with
    jitter over the upper half so that receivers coming back are not hit all at once."""
    ceiling = min(settings.WEBHOOK_RETRY_BACKOFF_MAX,
                  settings.WEBHOOK_RETRY_BACKOFF_BASE * 2.0 ** max(0, attempts_made - 1))
    return round(random.uniform(ceiling / 2, ceiling), 3)


def _attempt_lease() -> timedelta:
    # Longer than any one attempt can take (connect, write and read timeouts), so the resume
    # task leaves an attempt under way alone.
    return timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS * 4 + 30)


def delivery_attempt(*, delivery_id: uuid.UUID | str, round: int, attempt: int) -> float | None:
    """Makes attempt number attempt + 1 of the round, if the delivery is still waiting for
    exactly that one. Returns the seconds until the next attempt, or None when there is none
    to make (delivered, failed for good, or this message was stale)."""
    number = attempt + 1
    claimed = Delivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING, replay_count=round,
                                      attempt_count=attempt).update(attempt_count=number,
                                                                     next_attempt_at=timezone.now() + _attempt_lease())
    if not claimed:
        logger.info("webhook.attempt_skipped delivery_id=%s round=%s attempt=%s", delivery_id, round, number)
        return None
    delivery = Delivery.objects.get(pk=delivery_id)
    if number > settings.WEBHOOK_MAX_ATTEMPTS:
        # Only after an attempt was cut off (its worker killed) and resumed past the limit.
        _finish(delivery, number=number, state=DeliveryState.FAILED, error="attempts exhausted")
        return None
    started = timezone.now()
    timestamp = int(time.time())
    signing_secrets = secrets_in_use(secret_get(user=delivery.owner), now=started)
    headers = signing.headers(signing_secrets, message_id=delivery.message_id, timestamp=timestamp,
                              body=delivery.body)
    answer = transport.post(delivery.url, headers=headers, body=delivery.body.encode(),
                            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
                            snippet_bytes=settings.WEBHOOK_RESPONSE_SNIPPET_BYTES)
    error = answer.error or ("" if answer.succeeded else f"HTTP {answer.status_code}")
    delay = None
    if answer.succeeded:
        state = DeliveryState.SUCCEEDED
    elif answer.refused or number >= settings.WEBHOOK_MAX_ATTEMPTS:
        state = DeliveryState.FAILED
    else:
        state, delay = DeliveryState.PENDING, retry_delay(number)
    with transaction.atomic():
        DeliveryAttempt.objects.create(delivery=delivery, round=round, number=number, started_at=started,
                                       duration_ms=answer.duration_ms, address=answer.address,
                                       status_code=answer.status_code, succeeded=answer.succeeded,
                                       error=error, response_snippet=answer.snippet)
        _finish(delivery, number=number, state=state, error=error, status_code=answer.status_code,
                next_attempt_at=started + timedelta(seconds=delay) if delay is not None else None)
    logger.info("webhook.attempt delivery_id=%s round=%s attempt=%s status=%s outcome=%s address=%s error=%s",
                delivery.pk, round, number, answer.status_code, state, answer.address, error[:200])
    return delay


def _finish(delivery: Delivery, *, number: int, state: str, error: str = "", status_code: int | None = None,
            next_attempt_at: datetime | None = None) -> None:
    done = state != DeliveryState.PENDING
    # Only the row as this attempt claimed it: a replay since then has started a new round.
    Delivery.objects.filter(pk=delivery.pk, replay_count=delivery.replay_count, attempt_count=number).update(
        state=state, last_status_code=status_code, last_error=error[:500], next_attempt_at=next_attempt_at,
        finished_at=timezone.now() if done else None)


def delivery_replay(*, delivery: Delivery, actor: str) -> Delivery:
    """Sends a finished (delivered or failed) delivery again: the same body and webhook-id,
    a fresh timestamp and signature, and a new round of WEBHOOK_MAX_ATTEMPTS attempts."""
    updated = Delivery.objects.filter(pk=delivery.pk).exclude(state=DeliveryState.PENDING).update(
        state=DeliveryState.PENDING, replay_count=F("replay_count") + 1, attempt_count=0,
        next_attempt_at=timezone.now(), finished_at=None, last_error="", last_status_code=None)
    if not updated:
        raise WebhookError("this delivery is still being attempted; replay it once it has succeeded or failed",
                           code="delivery_pending", status=409)
    delivery.refresh_from_db()
    replay_round = delivery.replay_count
    transaction.on_commit(lambda: delivery_publish(delivery_id=delivery.pk, round=replay_round, attempt=0))
    logger.info("webhook.replayed delivery_id=%s round=%s actor=%s", delivery.pk, replay_round, actor)
    return delivery


def deliveries_resume(*, now: datetime | None = None) -> int:
    """Publishes again the pending deliveries whose next attempt is WEBHOOK_RESUME_AFTER_SECONDS
    overdue: their message was lost (a broker restarted empty, a publish failed) or their
    worker died mid-attempt. A message that was only late is harmless: one of the two wins."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_RESUME_AFTER_SECONDS)
    overdue = Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lt=cutoff).values_list(
        "pk", "replay_count", "attempt_count")[:RESUME_BATCH]
    published = 0
    for pk, replay_round, attempts in overdue:
        # Moved forward first, so that another resume running at once skips this row.
        if Delivery.objects.filter(pk=pk, state=DeliveryState.PENDING, replay_count=replay_round,
                                   attempt_count=attempts, next_attempt_at__lt=cutoff).update(next_attempt_at=now):
            published += delivery_publish(delivery_id=pk, round=replay_round, attempt=attempts)
    if published:
        logger.info("webhook.resumed count=%s", published)
    return published
