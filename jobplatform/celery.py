"""The Celery app. Its tasks live in jobs.tasks; configuration (queues and routes too) lives in settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobplatform.settings.worker")

app = Celery("jobplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
