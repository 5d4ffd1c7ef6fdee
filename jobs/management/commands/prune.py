from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django_celery_results.models import TaskResult

from jobs import selectors
from jobs.models import TERMINAL_STATES, DeadLetter, JobState
from jobs.services.maintenance import retention_prune


class Command(BaseCommand):
    help = ("Delete what the retention settings let go, in batches that never hold up writers: finished jobs "
            "(JOB_RETENTION_DAYS) with their events, task results and objects in storage; DEAD jobs and dead "
            "letters (DEAD_LETTER_RETENTION_DAYS); task results (TASK_RESULT_RETENTION_DAYS). A job's input "
            "object stays while another job uses it.")

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, metavar="DAYS", dest="days",
                            help="every finished job, DEAD ones too, finished more than DAYS days ago "
                                 "(instead of JOB_RETENTION_DAYS and DEAD_LETTER_RETENTION_DAYS)")
        parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                            help="rows per transaction (default PRUNE_BATCH_SIZE)")
        parser.add_argument("--max-seconds", type=float, default=0, metavar="S",
                            help="stop after S seconds, to go on next time (default: until done)")
        parser.add_argument("--dry-run", action="store_true", help="count what would be removed, change nothing")

    def handle(self, *args, days, batch_size, max_seconds, dry_run, **options):
        if days is not None and days < 0:
            raise CommandError("--older-than must be 0 or more days")
        if batch_size is not None and not 1 <= batch_size <= 10_000:
            raise CommandError("--batch-size must be between 1 and 10000")
        if max_seconds < 0:
            raise CommandError("--max-seconds must be 0 (no limit) or more")
        job_days = settings.JOB_RETENTION_DAYS if days is None else days
        dead_days = settings.DEAD_LETTER_RETENTION_DAYS if days is None else days
        task_days = settings.TASK_RESULT_RETENTION_DAYS
        if dry_run:
            self.dry_run(job_days, dead_days, task_days)
            return
        report = retention_prune(job_days=job_days, dead_days=dead_days, task_result_days=task_days,
                                 batch_size=batch_size, max_seconds=max_seconds)
        self.stdout.write(f"removed {report.jobs} job(s) with {report.events} event(s) and {report.objects} "
                          f"object(s), {report.dead_letters} dead letter(s), {report.task_results} task result(s) "
                          f"in {report.batches} batch(es)")
        if not report.finished:
            self.stdout.write("stopped at --max-seconds; run it again to go on")
        for error in report.errors:
            self.stderr.write(f"storage refused a batch, kept for the next run: {error}")
        if report.errors:
            raise CommandError(f"{len(report.errors)} batch(es) kept: object storage refused their deletes")

    def dry_run(self, job_days: int, dead_days: int, task_days: int) -> None:
        now = timezone.now()
        for label, days, states in (("finished job(s)", job_days, TERMINAL_STATES - {JobState.DEAD}),
                                    ("DEAD job(s)", dead_days, {JobState.DEAD})):
            if not days:
                self.stdout.write(f"would remove 0 {label} (kept forever)")
                continue
            cutoff = now - timedelta(days=days)
            count = selectors.jobs_finished_before(cutoff=cutoff, states=states).count()
            self.stdout.write(f"would remove {count} {label} finished before {cutoff:%Y-%m-%d %H:%M:%S} UTC")
        if dead_days:
            letters = DeadLetter.objects.filter(died_at__lt=now - timedelta(days=dead_days)).exclude(
                job__state=JobState.DEAD).count()
            self.stdout.write(f"would remove {letters} dead letter(s) of replayed jobs")
        if task_days:
            results = TaskResult.objects.get_all_expired(timedelta(days=task_days)).count()
            self.stdout.write(f"would remove {results} task result(s), besides those of the jobs above")
