"""The lease heartbeat: one beater thread per process extends the lease of every job it runs."""

from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection

from .models import Job
from .services.execution import job_heartbeat

logger = logging.getLogger(__name__)


class Heartbeat:
    """Extends the job's lease while the processor works, from the process's beater thread.

    If the lease is lost (the sweeper gave the job to someone else), `lost` is set and
    the processor is stopped at its next chunk. Entering and leaving only registers the
    job with the beater: a job that ends within one interval costs no thread and no
    statement of its own.
    """

    def __init__(self, job: Job):
        self.job_id, self.token = job.id, job.claim_token
        self.lost = threading.Event()
        self.due = 0.0

    def __enter__(self) -> Heartbeat:
        Beater.get().add(self)
        return self

    def __exit__(self, *exc) -> None:
        Beater.get().remove(self)


class Beater:
    """One daemon thread per process that beats for every job the process is running, each
    JOB_HEARTBEAT_SECONDS after the last; a thread per job would cost every tiny job a
    thread start and join."""

    instance: Beater | None = None
    lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.jobs: set[Heartbeat] = set()
        self.changed = threading.Condition()
        self.wake_at = 0.0  # when the thread wakes next (0: not yet asleep)
        self.connected = False  # whether it has used a database connection since it last closed it
        self.thread = threading.Thread(target=self.run, name="heartbeat", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> Beater:
        # By pid: a forked Celery child starts its own (its parent's thread did not fork).
        beater = cls.instance
        if beater is None or beater.pid != os.getpid():
            with cls.lock:
                if cls.instance is None or cls.instance.pid != os.getpid():
                    cls.instance = cls()
                beater = cls.instance
        return beater

    def add(self, heartbeat: Heartbeat) -> None:
        with self.changed:
            heartbeat.due = time.monotonic() + settings.JOB_HEARTBEAT_SECONDS
            self.jobs.add(heartbeat)
            if heartbeat.due < self.wake_at:  # else the thread wakes in time anyway
                self.changed.notify()

    def remove(self, heartbeat: Heartbeat) -> None:
        with self.changed:
            self.jobs.discard(heartbeat)
            if not self.jobs and self.connected:  # wake it to let go of its connection
                self.changed.notify()

    def run(self) -> None:
        while True:
            with self.changed:
                now = time.monotonic()
                due = [job for job in self.jobs if job.due <= now]
                if not due:
                    if not self.jobs and self.connected:
                        connection.close()  # idle: hold no database connection
                        self.connected = False
                    self.wake_at = min((job.due for job in self.jobs), default=now + 3600)
                    self.changed.wait(self.wake_at - now)
                    continue
                for job in due:
                    job.due = now + settings.JOB_HEARTBEAT_SECONDS
                self.connected = True
            for job in due:
                self.beat(job)

    def beat(self, heartbeat: Heartbeat) -> None:
        try:
            if not job_heartbeat(job_id=heartbeat.job_id, claim_token=heartbeat.token):
                heartbeat.lost.set()
                self.remove(heartbeat)
        except DatabaseError:
            logger.warning("job.heartbeat_failed job_id=%s", heartbeat.job_id, exc_info=True)
            # A connection the server dropped (a restart) stays broken: the next beat must
            # open a new one, or the lease runs out under a worker that is alive.
            connection.close()
        except Exception:  # the thread must outlive any one failure
            logger.exception("job.heartbeat_error job_id=%s", heartbeat.job_id)
