"""Maintenance: retention (finished jobs with their objects, dead letters, task results),
and aborting abandoned uploads."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_celery_results.models import TaskResult

import storage
from storage import multipart

from .. import selectors
from ..models import TERMINAL_STATES, DeadLetter, Job, JobState
from ..uploads.models import UploadSession

logger = logging.getLogger(__name__)
# Output listings of one batch run this many at a time: each is one short S3 request.
LIST_THREADS = 8


@dataclass
class PruneReport:
    """What one retention run removed. `errors` names each batch that storage refused: its
    rows stay, and the next run takes them again."""

    jobs: int = 0
    events: int = 0
    dead_letters: int = 0
    task_results: int = 0
    objects: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)
    finished: bool = True  # False when the time budget ran out first; the next run goes on


def retention_prune(*, job_days: int | None = None, dead_days: int | None = None,
                    task_result_days: int | None = None, batch_size: int | None = None,
                    max_seconds: float | None = None, now: datetime | None = None) -> PruneReport:
    """One retention run, each part by its setting unless given (0 keeps forever):
    finished jobs after JOB_RETENTION_DAYS, DEAD jobs and dead letters after
    DEAD_LETTER_RETENTION_DAYS, task results after TASK_RESULT_RETENTION_DAYS.

    Each part deletes in batches of `batch_size` rows, one short transaction each, and stops
    when `max_seconds` (PRUNE_MAX_SECONDS) are used up: the next run continues."""
    now = now or timezone.now()
    days = {"job": settings.JOB_RETENTION_DAYS if job_days is None else job_days,
            "dead": settings.DEAD_LETTER_RETENTION_DAYS if dead_days is None else dead_days,
            "task": settings.TASK_RESULT_RETENTION_DAYS if task_result_days is None else task_result_days}
    size = batch_size or settings.PRUNE_BATCH_SIZE
    budget = settings.PRUNE_MAX_SECONDS if max_seconds is None else max_seconds
    until = time.monotonic() + budget if budget else None
    report = PruneReport()
    if days["job"]:
        jobs_prune(cutoff=now - timedelta(days=days["job"]), states=TERMINAL_STATES - {JobState.DEAD},
                   batch_size=size, until=until, report=report)
    if days["dead"]:
        cutoff = now - timedelta(days=days["dead"])
        jobs_prune(cutoff=cutoff, states={JobState.DEAD}, batch_size=size, until=until, report=report)
        # Letters of jobs replayed since: their job lives on, the letter is history.
        report.dead_letters += delete_in_batches(
            DeadLetter.objects.filter(died_at__lt=cutoff).exclude(job__state=JobState.DEAD),
            batch_size=size, until=until, report=report)
    if days["task"]:
        # django-celery-results' own expiry, in batches: its backend_cleanup deletes them all
        # in one statement (CELERY_RESULT_EXPIRES is None, so beat does not schedule it).
        report.task_results += delete_in_batches(
            TaskResult.objects.get_all_expired(timedelta(days=days["task"])),
            batch_size=size, until=until, report=report)
    if report.jobs or report.dead_letters or report.task_results or report.errors:
        logger.info("retention.pruned jobs=%s events=%s objects=%s dead_letters=%s task_results=%s batches=%s "
                    "errors=%s finished=%s", report.jobs, report.events, report.objects, report.dead_letters,
                    report.task_results, report.batches, len(report.errors), report.finished)
    return report


def _out_of_time(until: float | None, report: PruneReport) -> bool:
    if until is not None and time.monotonic() >= until:
        report.finished = False
        return True
    return False


def jobs_prune(*, cutoff: datetime, states=TERMINAL_STATES, batch_size: int = 1000, until: float | None = None,
               report: PruneReport | None = None) -> PruneReport:
    """Deletes jobs in `states` finished before `cutoff`, with their events, dead letters,
    task results and objects, `batch_size` jobs per transaction, until none is left (or
    the monotonic time `until`). A batch whose objects storage refused is kept whole, and
    the run stops there: storage is likely down, and the next run takes the batch again."""
    report = report if report is not None else PruneReport()
    while not _out_of_time(until, report):
        try:
            removed = job_prune_batch(cutoff=cutoff, states=states, batch_size=batch_size, report=report)
        except storage.StorageError as exc:
            report.errors.append(str(exc))
            logger.warning("retention.storage_error: %s", exc)
            break
        if not removed:
            break
    return report


def job_prune_batch(*, cutoff: datetime, states=TERMINAL_STATES, batch_size: int = 1000,
                    report: PruneReport | None = None) -> int:
    """One batch: the oldest finished jobs' objects, then their rows, in one transaction.

    Objects go first, while the rows are locked: a crash in between leaves rows whose
    objects are (partly) gone, and the next batch takes those same rows again, so once a
    batch commits no row names a deleted object and no object of a deleted row is left.
    SKIP LOCKED: rows another pruner (or an operator's retry) holds are left for later,
    and nobody waits; writers of other rows never wait for the batch at all.
    """
    report = report if report is not None else PruneReport()
    with transaction.atomic():
        jobs = list(selectors.jobs_finished_before(cutoff=cutoff, states=states)
                    .select_for_update(skip_locked=True)
                    .only("id", "state", "worker_deaths", "task_ids", "result_keys", "input_bucket", "input_key")
                    [:batch_size])
        if not jobs:
            return 0
        ids = [job.id for job in jobs]
        objects = _outputs(jobs)
        for bucket, key in _unshared_inputs(jobs, ids):
            objects.setdefault(bucket, []).append(key)
        for bucket, keys in objects.items():
            storage.delete_many(bucket, keys)
        task_ids = [task_id for job in jobs for task_id in job.task_ids]
        if task_ids:
            report.task_results += TaskResult.objects.filter(task_id__in=task_ids).delete()[0]
        _, per_model = Job.objects.filter(pk__in=ids).delete()
    report.batches += 1
    report.jobs += per_model.get("jobs.Job", 0)
    report.events += per_model.get("jobs.JobEvent", 0)
    report.dead_letters += per_model.get("jobs.DeadLetter", 0)
    report.objects += sum(len(keys) for keys in objects.values())
    return len(ids)


def _outputs(jobs: list[Job]) -> dict[str, list[str]]:
    """The output keys of each job. An attempt that fails, is cancelled or meets a transient
    error deletes what it wrote (jobs.runner.discard_outputs), so a COMPLETED job whose worker
    never died holds exactly its result_keys. Any other job that ran may have left outputs
    behind (a killed worker, a discard that storage refused): its prefix is listed, in
    parallel, one request per job."""
    bucket, keys, listed = storage.output_bucket(), [], []
    for job in jobs:
        if not job.task_ids:
            continue  # never queued, so never run: nothing was written
        if job.state == JobState.COMPLETED and not job.worker_deaths:
            keys.extend(job.result_keys)
        else:
            listed.append(storage.output_prefix(job.id))
    if listed:
        with ThreadPoolExecutor(max_workers=LIST_THREADS) as pool:
            for found in pool.map(lambda prefix: storage.list_keys(bucket, prefix), listed):
                keys.extend(found)
    return {bucket: keys} if keys else {}


def _unshared_inputs(jobs: list[Job], ids: list) -> set[tuple[str, str]]:
    """Inputs of these jobs that no other job reads (an upload can feed several jobs)."""
    inputs = {(job.input_bucket, job.input_key) for job in jobs if job.input_key}
    still_used = set(Job.objects.filter(input_key__in=[key for _, key in inputs]).exclude(pk__in=ids)
                     .order_by().values_list("input_bucket", "input_key"))
    return inputs - still_used


def delete_in_batches(queryset: QuerySet, *, batch_size: int, until: float | None = None,
                      report: PruneReport | None = None) -> int:
    """Deletes the rows of `queryset`, `batch_size` per transaction, skipping locked rows."""
    report = report if report is not None else PruneReport()
    deleted = 0
    while not _out_of_time(until, report):
        with transaction.atomic():
            pks = list(queryset.order_by().select_for_update(skip_locked=True)
                       .values_list("pk", flat=True)[:batch_size])
            if not pks:
                break
            deleted += queryset.model.objects.filter(pk__in=pks).delete()[0]
        report.batches += 1
    return deleted


@dataclass(frozen=True)
class AbandonedUploads:
    aborted: int = 0  # multipart uploads aborted on the server
    sessions: int = 0  # direct-upload rows marked ABORTED (their upload aborted, or already gone)
    errors: tuple[str, ...] = ()


def uploads_abort_abandoned(*, older_than: timedelta | None = None, now: datetime | None = None) -> AbandonedUploads:
    """Aborts multipart uploads open for longer than `older_than` (UPLOAD_ABANDONED_SECONDS).

    It does not rely on the server's lifecycle rules, which not every server enforces. It
    covers direct uploads whose client never finished (their rows become ABORTED), streamed
    uploads whose web process was killed, and outputs of a worker killed mid-write, in both
    buckets under this platform's key prefix. A direct upload's age is its row's; any other's
    is the server's `Initiated` time. `now` is what ages are measured against (default: now).
    """
    if settings.STORAGE_BACKEND != "s3":
        return AbandonedUploads()
    if older_than is None:
        older_than = timedelta(seconds=settings.UPLOAD_ABANDONED_SECONDS)
    cutoff = (now or timezone.now()) - older_than
    aborted, sessions, errors = 0, 0, []
    stale = UploadSession.objects.filter(status=UploadSession.Status.OPEN, created_at__lt=cutoff)
    for pk in list(stale.values_list("pk", flat=True)):
        with transaction.atomic():
            # Locked as multipart_complete locks it; one being completed right now is skipped.
            session = stale.select_for_update(skip_locked=True).filter(pk=pk).first()
            if session is None:
                continue
            try:
                multipart.abort(session.bucket, session.key, session.s3_upload_id)
                aborted += 1
            except storage.ObjectNotFound:
                pass  # already gone on the server
            except storage.StorageError as exc:
                errors.append(str(exc))
                continue
            session.status, session.finished_at = UploadSession.Status.ABORTED, timezone.now()
            session.save(update_fields=["status", "finished_at"])
            sessions += 1
    for bucket in dict.fromkeys([storage.input_bucket(), storage.output_bucket()]):
        try:
            old = [u for u in multipart.list_open(bucket, storage.prefixed("")) if u["initiated"] < cutoff]
        except storage.StorageError as exc:
            errors.append(str(exc))
            continue
        # An open direct upload is judged by its row (above), never by the server's clock.
        owned = set(UploadSession.objects.filter(status=UploadSession.Status.OPEN,
                                                 s3_upload_id__in=[u["upload_id"] for u in old])
                    .values_list("s3_upload_id", flat=True))
        for upload in old:
            if upload["upload_id"] in owned:
                continue
            try:
                multipart.abort(bucket, upload["key"], upload["upload_id"])
                aborted += 1
            except storage.ObjectNotFound:
                pass
            except storage.StorageError as exc:
                errors.append(str(exc))
    if aborted or sessions or errors:
        logger.info("upload.abandoned_aborted aborted=%s sessions=%s errors=%s", aborted, sessions, len(errors))
    return AbandonedUploads(aborted=aborted, sessions=sessions, errors=tuple(errors))
