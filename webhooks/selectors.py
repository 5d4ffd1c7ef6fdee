"""Read-side queries. A user only ever sees their own endpoints and deliveries: another
user's is a 404, indistinguishable from none."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from .errors import WebhookError
from .models import Delivery, DeliveryAttempt, Endpoint

PG_BIGINT_MAX = 2**63 - 1


def endpoint_list(*, user) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(owner=user).order_by("created_at", "id")


def endpoint_get(*, user, endpoint_id: int) -> Endpoint:
    endpoint = endpoint_list(user=user).filter(pk=endpoint_id).first() if 0 < endpoint_id <= PG_BIGINT_MAX else None
    if endpoint is None:
        raise WebhookError("endpoint not found", code="not_found", status=404)
    return endpoint


def delivery_list(*, user, state: str | None = None, job_id: uuid.UUID | None = None) -> QuerySet[Delivery]:
    qs = Delivery.objects.filter(owner=user)
    if state:
        qs = qs.filter(state=state)
    if job_id:
        qs = qs.filter(job_id=job_id)
    attempts = Prefetch("attempts", queryset=DeliveryAttempt.objects.order_by("started_at", "id"))
    return qs.prefetch_related(attempts).order_by("-created_at", "id")


def delivery_get(*, user, delivery_id: uuid.UUID | str) -> Delivery:
    try:
        delivery_id = uuid.UUID(str(delivery_id))
    except ValueError:
        raise WebhookError("delivery not found", code="not_found", status=404) from None
    delivery = delivery_list(user=user).filter(pk=delivery_id).first()
    if delivery is None:
        raise WebhookError("delivery not found", code="not_found", status=404)
    return delivery
