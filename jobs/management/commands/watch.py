import uuid

from django.core.management.base import BaseCommand, CommandError

from jobs.models import Job

from ._follow import EXIT_CODES_HELP, EXIT_USAGE, follow, quiet_logging


class Command(BaseCommand):
    help = ("Follow a job until it ends: progress on stderr, and on COMPLETED its result JSON alone on stdout. "
            "A job that has already ended is reported at once. " + EXIT_CODES_HELP)

    def add_arguments(self, parser):
        parser.add_argument("job_id", help="the job's id (as `submit` prints it)")
        parser.add_argument("--timeout", type=float, default=None,
                            help="give up after this many seconds (default: wait as long as it takes)")

    def handle(self, *args, job_id, timeout, verbosity, **options):
        try:
            pk = uuid.UUID(job_id)
        except ValueError:
            raise CommandError(f"{job_id!r} is not a job id (a UUID)", returncode=EXIT_USAGE) from None
        if timeout is not None and timeout <= 0:
            raise CommandError("--timeout must be positive", returncode=EXIT_USAGE)
        job = Job.objects.filter(pk=pk).first()
        if job is None:
            raise CommandError(f"no job with id {pk}")
        with quiet_logging(verbosity):
            follow(job, timeout=timeout, stdout=self.stdout, stderr=self.stderr, verbosity=verbosity)
