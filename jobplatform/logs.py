"""Log records that carry the job they are about: job_id, job_type, attempt and worker.

LOG_FORMAT=json (settings) writes each record as one JSON line through python-json-logger,
these four among its fields; the text format shows the same records as before.

A pool process runs one job at a time. Its Celery task_prerun binds the job's id and the
worker's name for the task's thread; the job's claim (a job_moved into PROCESSING in this
process) adds its type and attempt; task_postrun unbinds. A record made with
`extra={"job_id": ...}` keeps what it says. Threads of their own (the heartbeat) are not
bound.
"""

from __future__ import annotations

import contextvars
import logging

from celery.signals import task_postrun, task_prerun

JOB_FIELDS = ("job_id", "job_type", "attempt", "worker")
RUN_JOB = "jobs.run_job"

_job: contextvars.ContextVar[dict | None] = contextvars.ContextVar("jobplatform_log_job", default=None)


class JobContextFilter(logging.Filter):
    """Sets the job fields on every record (None outside a job), without overriding `extra`."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _job.get() or {}
        for name in JOB_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, bound.get(name))
        return True


def bound_job() -> dict:
    return dict(_job.get() or {})


@task_prerun.connect
def _bind_task(sender=None, args=None, **_) -> None:
    if getattr(sender, "name", None) != RUN_JOB or not args:
        return
    _job.set({"job_id": str(args[0]), "job_type": None, "attempt": None,
              "worker": getattr(sender.request, "hostname", None)})


@task_postrun.connect
def _unbind_task(sender=None, **_) -> None:
    if getattr(sender, "name", None) == RUN_JOB:
        _job.set(None)


def job_moved_bound(sender=None, *, job, event, **_) -> None:
    """Receiver of jobs.signals.job_moved: the claim of the bound job names its type and attempt."""
    bound = _job.get()
    if bound is not None and bound["job_id"] == str(job.id) and event.to_state == "PROCESSING":
        _job.set({**bound, "job_type": job.job_type, "attempt": job.attempts})
