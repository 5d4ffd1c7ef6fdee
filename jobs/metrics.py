"""The platform's Prometheus metrics, every one named jobplatform_*, and what records them.

Most numbers come from transitions: `job_moved` (jobs.signals, sent after commit, once per
move) reaches `job_moved_recorded` in the process that made the move. The rest are one call
where the thing happens (an upload stored, a pool process lost, a sweep, a failed notify).
Counters and histograms live in the process that records them; under Celery's prefork pool
prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR) adds up every process's
files for the worker's exporter (jobs.metrics_export).

Jobs by state is not a counter: `JobsCollector` counts the non-terminal states at scrape
time with one grouped query over job_state_lease (it leads with the state), so its cost follows the backlog, not the
table. Terminal states are counted by the transitions counter instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError, connection
from django.db.models import Count
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from processors import all_processors

from .models import TERMINAL_STATES, Job, JobEvent, JobState

logger = logging.getLogger(__name__)

# Seconds; from a claim within a few milliseconds to a backlog of an hour.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

transitions = Counter("jobplatform_job_transitions", "Committed job state changes.", ["from_state", "to_state", "type"])
queue_wait = Histogram("jobplatform_job_queue_wait_seconds",
                       "From QUEUED to a worker's claim (PROCESSING).", ["type"], buckets=WAIT_BUCKETS)
processing = Histogram("jobplatform_job_processing_seconds",
                       "From a worker's claim to the end of that attempt, by how it ended.",
                       ["type", "outcome"], buckets=DURATION_BUCKETS)
input_bytes = Counter("jobplatform_job_input_bytes", "Input bytes of completed jobs.", ["type"])
retries = Counter("jobplatform_job_retries", "Attempts that ended in a transient error with attempts left.", ["type"])
dead_letters = Counter("jobplatform_dead_letters", "Jobs that went DEAD (a dead-letter row each).", ["type", "code"])
upload_bytes = Counter("jobplatform_upload_bytes", "Bytes of uploads stored.", ["method"])
upload_seconds = Histogram("jobplatform_upload_seconds", "From an upload's start to its object stored.",
                           ["method"], buckets=DURATION_BUCKETS)
worker_deaths = Counter("jobplatform_worker_deaths", "Leases the sweeper found expired: the job's worker died.",
                        ["type"])
pool_process_lost = Counter("jobplatform_worker_pool_process_lost",
                            "Pool processes a worker's main process saw die while running a job.", ["cause"])
sweeper_actions = Counter("jobplatform_sweeper_actions", "Jobs the sweeper moved on or republished, by what it found.",
                          ["action"])
notify_publish_failures = Counter("jobplatform_notify_publish_failures",
                                  "Live notifications the channel layer could not publish (logged as notify.failed).")


def job_moved_recorded(sender=None, *, job: Job, event: JobEvent, **_) -> None:
    """Receiver of jobs.signals.job_moved: one committed move of `job` (the row as moved)."""
    job_type, to = job.job_type, event.to_state
    transitions.labels(from_state=event.from_state or "", to_state=to, type=job_type).inc()
    if to == JobState.PROCESSING and event.from_state == JobState.QUEUED and job.queued_at:
        queue_wait.labels(type=job_type).observe(max(0.0, (event.created_at - job.queued_at).total_seconds()))
    if event.from_state == JobState.PROCESSING and job.started_at:
        seconds = max(0.0, (event.created_at - job.started_at).total_seconds())
        processing.labels(type=job_type, outcome=to.lower()).observe(seconds)
    if to == JobState.COMPLETED:
        input_bytes.labels(type=job_type).inc(job.input_size)
    elif to == JobState.RETRYING:
        retries.labels(type=job_type).inc()
    elif to == JobState.DEAD:
        dead_letters.labels(type=job_type, code=job.error_code or "dead").inc()


def upload_stored(*, method: str, size: int, seconds: float) -> None:
    upload_bytes.labels(method=method).inc(size)
    upload_seconds.labels(method=method).observe(max(0.0, seconds))


def sweep_recorded(counts: dict[str, int]) -> None:
    for action, count in counts.items():
        if count:
            sweeper_actions.labels(action=action).inc(count)


def worker_death_recorded(*, job_type: str) -> None:
    worker_deaths.labels(type=job_type).inc()


def pool_process_lost_recorded(*, cause: str) -> None:
    pool_process_lost.labels(cause=cause).inc()


NON_TERMINAL_STATES = tuple(state for state in JobState.values if state not in TERMINAL_STATES)


class JobsCollector(Collector):
    """jobplatform_jobs{state,type}: jobs in each non-terminal state, counted at scrape time.

    One grouped COUNT over job_state_lease, restricted to the non-terminal states: it reads
    the backlog and the running jobs, never the finished millions. A database that does not
    answer leaves the family out and says so in jobplatform_jobs_query_ok."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ok = GaugeMetricFamily("jobplatform_jobs_query_ok", "1 if the jobs-by-state query of this scrape answered.")
        try:
            rows = list(Job.objects.filter(state__in=NON_TERMINAL_STATES).values_list("state", "job_type")
                        .order_by().annotate(count=Count("id")))
        except DatabaseError:
            logger.warning("metrics.jobs_query_failed", exc_info=True)
            connection.close()
            ok.add_metric([], 0)
            yield ok
            return
        family = GaugeMetricFamily("jobplatform_jobs", "Jobs in each non-terminal state (terminal ones: "
                                   "jobplatform_job_transitions_total).", labels=["state", "type"])
        # Every registered type in every state, 0 included, so a drained queue shows as 0, not as nothing.
        counts = {(state, processor.job_type): 0 for processor in all_processors() for state in NON_TERMINAL_STATES}
        counts.update({(state, job_type): count for state, job_type, count in rows})
        for (state, job_type), count in sorted(counts.items()):
            family.add_metric([state, job_type], count)
        ok.add_metric([], 1)
        yield family
        yield ok

