import importlib

from django.apps import AppConfig
from django.conf import settings


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        import processors  # noqa: F401  (registers the built-in job types)

        for module in settings.PROCESSOR_MODULES:
            importlib.import_module(module)
