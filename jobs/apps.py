import importlib

from django.apps import AppConfig
from django.conf import settings


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # The project's Celery app becomes current_app in every process that sets Django up,
        # so services publish through it (the web process never imports it otherwise).
        import jobplatform.celery  # noqa: F401
        import processors  # noqa: F401  (registers the built-in job types)
        from jobplatform import dbdeadline

        dbdeadline.install()  # a client-side deadline for calls to a hung database server

        # Metrics and the log records' job fields follow every committed move; metrics_export
        # holds the worker exporter's Celery signal handlers.
        from jobplatform import logs

        from . import metrics, metrics_export  # noqa: F401
        from .signals import job_moved

        job_moved.connect(metrics.job_moved_recorded, dispatch_uid="jobs.metrics")
        job_moved.connect(logs.job_moved_bound, dispatch_uid="jobplatform.logs")

        for module in settings.PROCESSOR_MODULES:
            importlib.import_module(module)
