"""Webhook rows: a user's signing secret and saved endpoints, deliveries and their attempts.
Rows only: they change through webhooks.services."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class EventFilter(models.TextChoices):
    TERMINAL = "terminal", "terminal states only"
    ALL = "all", "every state"


class SigningSecret(models.Model):
    """One per user: signs every delivery to that user's endpoints and callback URLs."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_secret")
    secret = models.CharField(max_length=128)
    # The secret before the last rotation; it signs beside the new one until previous_valid_until.
    previous_secret = models.CharField(max_length=128, blank=True)
    previous_valid_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"signing secret of user {self.user_id}"


class Endpoint(models.Model):
    """A URL a user saved to receive the events of all their jobs."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2048)
    events = models.CharField(max_length=16, choices=EventFilter.choices, default=EventFilter.TERMINAL)
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["owner", "enabled"], name="webhook_endpoint_owner")]

    def __str__(self) -> str:
        return self.url


class DeliveryState(models.TextChoices):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class Delivery(models.Model):
    """One event for one URL. Its body is fixed when the event happens, so every attempt and
    every replay sends the same bytes under the same webhook-id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_deliveries")
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="webhook_deliveries")
    job_event = models.ForeignKey("jobs.JobEvent", on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="+")
    # None for a job's own callback_url.
    endpoint = models.ForeignKey(Endpoint, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="deliveries")
    url = models.URLField(max_length=2048)
    event_type = models.CharField(max_length=32)
    message_id = models.CharField(max_length=64, unique=True)
    body = models.TextField()

    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING,
                             db_index=True)
    # Attempts in the current round; a replay starts a new round (replay_count + 1) from 0.
    attempt_count = models.PositiveIntegerField(default=0)
    replay_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        constraints = [
            # One delivery per event and URL, however often the event is announced.
            models.UniqueConstraint(fields=["job_event", "url"], condition=models.Q(job_event__isnull=False),
                                    name="webhook_delivery_once_per_event_and_url"),
        ]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="webhook_delivery_owner"),
            models.Index(fields=["state", "next_attempt_at"], name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} to {self.url} ({self.state})"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    round = models.PositiveIntegerField(default=0, help_text="0 for the first sending, n for the n-th replay")
    number = models.PositiveIntegerField(help_text="1 for the first attempt of its round")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    # The address actually connected to, after the destination check.
    address = models.CharField(max_length=64, blank=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    succeeded = models.BooleanField(default=False)
    error = models.CharField(max_length=500, blank=True)
    response_snippet = models.TextField(blank=True)

    class Meta:
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"attempt {self.round}.{self.number} of {self.delivery_id}"
