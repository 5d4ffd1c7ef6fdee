"""The Celery app. Queues are named in jobs.tasks.Queue; configuration lives in settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobplatform.settings")
# Celery's Django fixup runs Django's system checks when a worker starts, and the URL checks
# import the whole URLconf (the admin, the API's views, drf-spectacular) into the worker's
# main process, which every pool process then carries: ~11 MiB of RSS each, for views no
# worker serves (docs/benchmarks.md, issue 5). The checks run where they belong: `manage.py
# migrate` (make run, the compose entrypoint), `manage.py check`, and the test suite.
# CELERY_SKIP_CHECKS= (empty) in the environment brings them back.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("jobplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
