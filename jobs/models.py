"""Job, JobEvent, DeadLetter. Rows only: every state change goes through jobs.state_machine."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, HashIndex, OpClass
from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone


class JobState(models.TextChoices):
    CREATED = "CREATED"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    RETRYING = "RETRYING"
    FAILED = "FAILED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    DEAD = "DEAD"


TERMINAL_STATES = frozenset({JobState.FAILED, JobState.COMPLETED, JobState.CANCELLED, JobState.DEAD})


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    job_type = models.CharField(max_length=64, db_index=True)
    params = models.JSONField(default=dict, blank=True)
    processor_version = models.CharField(max_length=32, blank=True)

    input_bucket = models.CharField(max_length=255)
    input_key = models.CharField(max_length=1024)
    input_name = models.CharField(max_length=255, blank=True, help_text="the original file name")
    input_size = models.BigIntegerField(default=0)
    input_etag = models.CharField(max_length=128, blank=True)

    # Searched through job_state_lease and the owner indexes, which lead with it where it matters.
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.CREATED)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    worker_deaths = models.PositiveIntegerField(default=0, help_text="leases that expired: its worker died")
    progress_bytes = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)

    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)
    result_keys = models.JSONField(default=list, blank=True)

    celery_task_id = models.CharField(max_length=255, blank=True)  # read with its row, never searched
    task_ids = models.JSONField(default=list, blank=True)
    # Who holds the job while PROCESSING: a fresh token per claim, so a worker that lost its
    # lease cannot complete a job someone else has since claimed.
    claim_token = models.UUIDField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    publish_count = models.PositiveIntegerField(default=0)
    # Bumped by every state change: job_transition updates a row only at the version it read.
    version = models.PositiveIntegerField(default=0)

    # NULL, not "", for "no key": the unique constraint must ignore jobs without one.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)
    # Where the job's terminal state is delivered as a signed webhook (webhooks app); checked
    # against jobplatform.destinations at creation and again at delivery.
    callback_url = models.URLField(max_length=2048, blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "idempotency_key"],
                                    condition=models.Q(idempotency_key__isnull=False),
                                    name="job_idempotency_key_unique_per_owner"),
        ]
        # Each serves a query that would otherwise read every row (docs/operations.md#indexes).
        indexes = [
            models.Index(fields=["state", "lease_expires_at"], name="job_state_lease"),
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            # The job list filtered by state or type, and the live pages' unfinished jobs.
            models.Index(fields=["owner", "state", "-created_at"], name="job_owner_state_created"),
            models.Index(fields=["owner", "job_type", "-created_at"], name="job_owner_type_created"),
            # Retention and the live pages' recently finished jobs; unfinished rows stay out of it.
            models.Index(fields=["finished_at"], condition=models.Q(state__in=sorted(TERMINAL_STATES)),
                         name="job_finished"),
            # Whether another job still reads an input: equality only, and keys are long.
            HashIndex(fields=["input_key"], name="job_input_key"),
            # Admin search by file name: icontains compares UPPER(input_name).
            GinIndex(OpClass(Upper("input_name"), name="gin_trgm_ops"), name="job_input_name_trgm"),
        ]

    def __str__(self) -> str:
        return f"{self.job_type} {self.id} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def is_stalled(self) -> bool:
        """PROCESSING with no progress written for JOB_STALL_SECONDS. Heartbeats do not count:
        they show the worker is alive, not that the job moves."""
        return self.state == JobState.PROCESSING and self.updated_at is not None and (
            self.updated_at < stalled_before(timezone.now()))

    @property
    def progress_percent(self) -> float | None:
        if self.state == JobState.COMPLETED:
            return 100.0
        if not self.progress_total:
            return None
        return round(min(100.0, 100.0 * self.progress_bytes / self.progress_total), 1)


def stalled_before(now: datetime) -> datetime:
    """A PROCESSING job whose updated_at is older than this is stalled. updated_at is the last
    progress write, or the claim itself (every transition sets it) when none was written yet."""
    return now - timedelta(seconds=settings.JOB_STALL_SECONDS)


class JobEvent(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=16, choices=JobState.choices, blank=True)
    to_state = models.CharField(max_length=16, choices=JobState.choices)
    reason = models.TextField(blank=True)
    attempt = models.PositiveIntegerField(default=0)
    actor = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state or '-'} -> {self.to_state}"


class DeadLetter(models.Model):
    """One per job that died; a later death of the same job updates it."""

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="dead_letter")
    reason = models.TextField()
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    died_at = models.DateTimeField()
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-died_at"]
        indexes = [models.Index(fields=["-died_at"], name="deadletter_died")]

    def __str__(self) -> str:
        return f"dead letter for {self.job_id}"

    @property
    def is_pending(self) -> bool:
        return self.replayed_at is None or self.replayed_at < self.died_at


# Defined beside the upload code; imported here so Django registers it with the jobs app.
from jobs.uploads.models import UploadSession  # noqa: E402, F401
