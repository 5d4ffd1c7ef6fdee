"""What users and operators do to a job: cancel, retry, replay a dead letter, download."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

import storage
from processors import get_processor
from processors.base import ProcessorError

from ..errors import JobError, TransitionRefused
from ..models import DeadLetter, Job, JobState
from ..state_machine import job_transition
from .queue import job_enqueue

S = JobState

# What a retried or replayed job starts over with.
FRESH_START = {"attempts": 0, "worker_deaths": 0, "error_code": "", "error_message": "", "finished_at": None,
               "progress_bytes": 0}


def job_cancel(*, job: Job, actor: str) -> Job:
    """Not yet running: CANCELLED now. Running: flagged, and the worker stops at the next chunk."""
    try:
        return job_transition(job_id=job.id, to=S.CANCELLED, expected=(S.CREATED, S.QUEUED, S.RETRYING),
                              reason="cancelled", actor=actor,
                              changes={"error_code": "cancelled", "error_message": "cancelled by request"})
    except TransitionRefused as exc:
        current = exc.job or job
    if current.state == S.PROCESSING:
        # A new version, so that a move computed from the row before the flag is made again.
        Job.objects.filter(pk=job.pk, state=S.PROCESSING).update(cancel_requested=True, version=F("version") + 1)
        current.refresh_from_db()
        return current
    raise JobError(f"a {current.state} job cannot be cancelled", code="invalid_state", status=409)


# FAILED causes that a retry cannot cure: the same input, read by the same processor with the
# same parameters under the same limits, fails the same way again. Any other cause (object
# storage refusing access, a code this table does not know) may be cured meanwhile.
PERMANENT_FAILURES: dict[str, frozenset[str]] = {
    "input": frozenset({
        "invalid_input", "input_not_found", "object_not_found", "input_too_large", "invalid_encoding",
        "line_too_long", "malformed_csv", "field_too_large", "record_too_large", "header_too_large",
        "too_many_columns", "invalid_json", "invalid_pdf", "not_a_pdf", "encrypted", "too_many_pages",
        "page_over_budget"}),
    "params": frozenset({"invalid_params", "unknown_job_type"}),
    "limit": frozenset({"resource_limit"}),
    "result": frozenset({"invalid_result"}),
}
WHY_NOT = {
    "input": "the input cannot be processed as it is; a retry reads the same file and fails the same way. "
             "Upload a corrected file as a new job",
    "params": "the job's parameters are refused; a retry uses the same ones. Create a new job with other parameters",
    "limit": "the job went over its CPU, memory or time limit; a retry runs under the same limits",
    "result": "the result holds a value that cannot be stored; a retry computes the same result",
}


def processor_changed(job: Job) -> bool:
    """Whether the job type's processor is another version than the one the job ran with:
    new code may accept what the old refused."""
    try:
        return get_processor(job.job_type).version != job.processor_version
    except ProcessorError:
        return False


def job_retry_refusal(*, job: Job) -> str | None:
    """Why retrying this job cannot help, or None if it may. Only FAILED and DEAD jobs can be
    retried at all; a DEAD job (transient errors used up its attempts) always may be, a
    FAILED one unless its cause is permanent (PERMANENT_FAILURES) and its processor unchanged."""
    if job.state == S.DEAD:
        return None
    if job.state != S.FAILED:
        return f"only FAILED or DEAD jobs can be retried; this one is {job.state}"
    kind = next((kind for kind, codes in PERMANENT_FAILURES.items() if job.error_code in codes), None)
    if kind is None or processor_changed(job):
        return None
    return f"retrying cannot help: {WHY_NOT[kind]} ({job.error_code})"


def job_retry(*, job: Job, actor: str) -> Job:
    """A retry of a FAILED or DEAD job that may help (job_retry_refusal): attempts start over,
    on the job type's current processor."""
    with transaction.atomic():
        job.refresh_from_db()
        refusal = job_retry_refusal(job=job)
        if refusal is not None:
            if job.state not in (S.FAILED, S.DEAD):
                raise JobError(refusal, code="invalid_state", status=409)
            raise JobError(refusal, code="not_retryable", status=409, details={"error_code": job.error_code})
        changes = dict(FRESH_START)
        if processor_changed(job):
            changes["processor_version"] = get_processor(job.job_type).version
        result = job_enqueue(job_id=job.id, expected=(S.FAILED, S.DEAD), reason="retried by operator",
                             actor=actor, changes=changes)
        if result is None:
            job.refresh_from_db()
            raise JobError(f"only FAILED or DEAD jobs can be retried; this one is {job.state}",
                           code="invalid_state", status=409)
        DeadLetter.objects.filter(job=job).update(replayed_at=timezone.now())
    return result


def dead_letter_replay(*, dead_letter: DeadLetter, actor: str) -> Job:
    """Queues a dead job again. Replaying twice is harmless: the second finds it no longer DEAD."""
    with transaction.atomic():
        # Locked so that two replays of one letter count once.
        letter = DeadLetter.objects.select_for_update().get(pk=dead_letter.pk)
        job = job_enqueue(job_id=letter.job_id, expected=(S.DEAD,), reason="replayed from dead letter",
                          actor=actor, changes=FRESH_START)
        if job is None:
            current = Job.objects.get(pk=letter.job_id)
            raise JobError(f"job is {current.state}, not DEAD; nothing to replay", code="invalid_state", status=409)
        letter.replayed_at = timezone.now()
        letter.replay_count += 1
        letter.save(update_fields=["replayed_at", "replay_count"])
    return job


def job_download_url(*, job: Job, which: str = "result", expiry_sec: int | str | None = None,
                     output: str | None = None) -> tuple[str, datetime]:
    """A presigned GET URL for the job's result (or another output, or its input) and when it expires."""
    if expiry_sec in (None, ""):
        expiry = settings.PRESIGNED_URL_DEFAULT_EXPIRY
    else:
        try:
            expiry = int(expiry_sec)
        except (TypeError, ValueError):
            raise JobError("expiry_sec must be a whole number of seconds", code="invalid_expiry") from None
    if not 1 <= expiry <= settings.PRESIGNED_URL_MAX_EXPIRY:
        raise JobError(f"expiry_sec must be between 1 and {settings.PRESIGNED_URL_MAX_EXPIRY}", code="invalid_expiry")
    if which == "input":
        bucket, key, filename = job.input_bucket, job.input_key, job.input_name
    else:
        if job.state != S.COMPLETED:
            raise JobError(f"the job is {job.state}; results exist once it is COMPLETED", code="not_ready", status=409)
        bucket = storage.output_bucket()
        name = output or "result.json"
        key = storage.output_key(job.id, name)
        if key not in job.result_keys:
            raise JobError(f"the job has no output named {name!r}", code="not_found", status=404)
        stem = (job.input_name or "input").rsplit(".", 1)[0]
        filename = f"{stem}.{name}"
    url = storage.presigned_get_url(bucket, key, expires=expiry, filename=filename)
    return url, timezone.now() + timedelta(seconds=expiry)
