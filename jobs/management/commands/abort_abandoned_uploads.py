from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.services.maintenance import uploads_abort_abandoned


class Command(BaseCommand):
    help = ("Abort multipart uploads (streamed, direct and job outputs) left open longer than "
            "UPLOAD_ABANDONED_SECONDS, or --older-than SECONDS; direct uploads' rows are marked ABORTED. "
            "Celery beat runs this every hour.")

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=None, metavar="SECONDS", dest="seconds",
                            help=f"default: UPLOAD_ABANDONED_SECONDS ({settings.UPLOAD_ABANDONED_SECONDS})")

    def handle(self, *args, seconds=None, **options):
        if seconds is None:
            seconds = settings.UPLOAD_ABANDONED_SECONDS
        if seconds < 0:
            raise CommandError("--older-than must be 0 or more seconds")
        outcome = uploads_abort_abandoned(older_than=timedelta(seconds=seconds))
        for error in outcome.errors:
            self.stderr.write(error)
        self.stdout.write(f"aborted {outcome.aborted} multipart upload(s) open for more than {seconds}s; "
                          f"{outcome.sessions} direct upload(s) marked aborted"
                          + (f"; {len(outcome.errors)} error(s)" if outcome.errors else ""))
        if outcome.errors:
            raise CommandError("some uploads could not be aborted (see above); they are tried again next time")
