"""Settings of Celery workers and beat.

A worker serves no pages: its URLconf is the web pages' alone, which the result link in a
live update is reversed through. It keeps the root URLconf, the API's URLs and views and
drf-spectacular out of every pool process (Django's system checks at worker start import
the URLconf too). The admin is loaded anyway: Django autodiscovers every app's admin module.
"""

from .base import *  # noqa: F403
from .base import SWEEP_INTERVAL_SECONDS, env_int

ROOT_URLCONF = "jobs.web.urls"

CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection after every task unless this is
# set; with it, only every 2 x this many tasks. jobs.tasks closes broken or expired ones
# after each task instead, as Django does after each request.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_BEAT_SCHEDULE = {
    # A sweep message that waited longer than one interval (every pool process busy with
    # long jobs) is dropped, not run late in a pile: the next one is on its way, and the
    # `manage.py sweep --loop` process sweeps whatever the pool is doing.
    "sweep": {"task": "jobs.sweep", "schedule": float(SWEEP_INTERVAL_SECONDS),
              "options": {"expires": float(SWEEP_INTERVAL_SECONDS)}},
    # Abandoned multipart uploads: hourly, aborting those open past UPLOAD_ABANDONED_SECONDS.
    "abort-abandoned-uploads": {"task": "jobs.abort_abandoned_uploads", "schedule": 3600.0,
                                "options": {"expires": 3600.0}},
    # Webhook deliveries whose message was lost (a broker restarted empty) are sent again.
    "resume-webhook-deliveries": {"task": "webhooks.resume", "schedule": 60.0, "options": {"expires": 60.0}},
    # Retention: hourly, each run at most PRUNE_MAX_SECONDS in bounded batches.
    "prune": {"task": "jobs.prune", "schedule": 3600.0, "options": {"expires": 3600.0}},
}
