"""The body of a job event's delivery, in the Standard Webhooks shape {type, timestamp, data}."""

from __future__ import annotations

import json

from jobs.models import Job, JobEvent, JobState

ERROR_MESSAGE_CHARS = 1000


def event_type(state: str) -> str:
    return f"job.{state.lower()}"


def result_url_path(job: Job) -> str:
    # A path, not reversed: workers, which announce completions, do not load the API's URLconf.
    return f"/api/v1/jobs/{job.id}/result-url"


def job_event_body(*, job: Job, event: JobEvent) -> str:
    """Compact JSON; `job` is the row as its last move left it, so the event's own state is
    taken from `event` (a create announces CREATED and QUEUED together)."""
    state = event.to_state
    has_error = state in (JobState.FAILED, JobState.DEAD, JobState.RETRYING) and job.error_code
    data = {
        "id": str(job.id),
        "job_type": job.job_type,
        "state": state,
        "previous_state": event.from_state or None,
        "attempt": event.attempt,
        "result_url": result_url_path(job) if state == JobState.COMPLETED else None,
        "error": {"code": job.error_code, "message": job.error_message[:ERROR_MESSAGE_CHARS]} if has_error else None,
    }
    payload = {"type": event_type(state), "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
               "data": data}
    return json.dumps(payload, separators=(",", ":"))
