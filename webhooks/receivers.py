"""The jobs signal this app listens to (connected in WebhooksConfig.ready)."""

from __future__ import annotations

from jobs.models import Job, JobEvent

from .services import deliveries_create_for_event


def job_moved_received(sender, *, job: Job, event: JobEvent, **kwargs) -> None:
    deliveries_create_for_event(job=job, event=event)
