"""Maintenance: removing finished jobs with their objects."""

from __future__ import annotations

from dataclasses import dataclass

import storage

from ..models import TERMINAL_STATES, Job


@dataclass(frozen=True)
class PruneOutcome:
    removed: bool
    outputs: int = 0
    input_deleted: bool = False
    error: str = ""


def job_prune(*, job: Job) -> PruneOutcome:
    """Deletes a finished job's row, its outputs, and its input unless another job uses it.

    The row goes first, and only while the job is still finished: a job replayed meanwhile
    is kept with its objects. An object left behind by a storage error is only garbage.
    """
    deleted, _ = Job.objects.filter(pk=job.pk, state__in=TERMINAL_STATES).delete()
    if not deleted:
        return PruneOutcome(removed=False)
    try:
        outputs = storage.delete_prefix(storage.output_bucket(), storage.output_prefix(job.id))
        shared = Job.objects.filter(input_bucket=job.input_bucket, input_key=job.input_key).exists()
        if not shared:
            storage.delete(job.input_bucket, job.input_key)
    except storage.StorageError as exc:
        return PruneOutcome(removed=True, error=str(exc))
    return PruneOutcome(removed=True, outputs=outputs, input_deleted=not shared)
