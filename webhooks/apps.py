from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from jobs.signals import job_moved

        from .receivers import job_moved_received

        # dispatch_uid: connected once, however often ready() runs (tests set Django up again).
        job_moved.connect(job_moved_received, dispatch_uid="webhooks.job_moved")
