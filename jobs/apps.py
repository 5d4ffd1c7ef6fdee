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

        for module in settings.PROCESSOR_MODULES:
            importlib.import_module(module)
