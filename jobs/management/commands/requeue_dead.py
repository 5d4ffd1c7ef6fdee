import uuid

from django.core.management.base import BaseCommand, CommandError

from jobs.errors import JobError
from jobs.models import DeadLetter, Job, JobState
from jobs.services.actions import dead_letter_replay
from processors import all_processors

from ._follow import EXIT_USAGE
from ._options import parse_since


class Command(BaseCommand):
    help = ("Replay DEAD jobs from their dead letters (queue them again with fresh attempts). Needs a filter "
            "(--job-type, --since, --id) or --all. Replaying is idempotent: a job no longer DEAD is skipped. "
            "An unknown --job-type is refused with the known ones (exit code 2).")

    def add_arguments(self, parser):
        parser.add_argument("--job-type", help="only jobs of this type")
        parser.add_argument("--since", help="only jobs that died since: an ISO date/date-time, or an age (2h, 3d)")
        parser.add_argument("--id", action="append", default=[], dest="ids", metavar="JOB_ID",
                            help="this job (repeatable)")
        parser.add_argument("--all", action="store_true", help="every dead job")
        parser.add_argument("--dry-run", action="store_true", help="list what would be replayed, change nothing")
        parser.add_argument("--limit", type=int, help="at most this many, oldest deaths first")

    def handle(self, *args, job_type, since, ids, dry_run, limit, **options):
        if not (job_type or since or ids or options["all"]):
            raise CommandError("refusing to replay without a filter: give --job-type, --since, --id, or --all")
        if job_type:
            self._check_job_type(job_type)
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1", returncode=EXIT_USAGE)
        try:
            job_ids = [uuid.UUID(value) for value in ids]
        except ValueError as exc:
            raise CommandError(f"--id: not a job id: {exc}", returncode=EXIT_USAGE) from None

        letters = DeadLetter.objects.filter(job__state=JobState.DEAD).select_related("job").order_by("died_at")
        if job_type:
            letters = letters.filter(job__job_type=job_type)
        if since:
            letters = letters.filter(died_at__gte=parse_since(since))
        if job_ids:
            letters = letters.filter(job_id__in=job_ids)
            missing = set(job_ids) - set(letters.values_list("job_id", flat=True))
            for job_id in sorted(missing, key=str):
                self.stdout.write(f"skipped {job_id}: no DEAD job with this id")
        if limit:
            letters = letters[:limit]

        replayed = skipped = 0
        for letter in letters:
            job = letter.job
            what = f"{job.id} {job.job_type} (died {letter.died_at:%Y-%m-%d %H:%M:%S}, {letter.reason[:100]})"
            if dry_run:
                self.stdout.write(f"would replay {what}")
                replayed += 1
                continue
            try:
                dead_letter_replay(dead_letter=letter, actor="command:requeue_dead")
            except JobError as exc:
                skipped += 1
                self.stdout.write(f"skipped {job.id}: {exc.message}")
            else:
                replayed += 1
                self.stdout.write(f"replayed {what}")
        if dry_run:
            self.stdout.write(f"dry run: would replay {replayed} job(s); nothing changed")
        else:
            self.stdout.write(f"replayed {replayed} job(s), skipped {skipped}")

    @staticmethod
    def _check_job_type(job_type: str) -> None:
        """A misspelt type would match nothing and replay nothing, silently: refuse it. Known
        are the registered types and any type a job has, so dead jobs of a retired type can
        still be replayed by name."""
        known = {p.job_type for p in all_processors()}
        if job_type in known or Job.objects.filter(job_type=job_type).exists():
            return
        raise CommandError(f"--job-type {job_type!r}: unknown job type; known types: {', '.join(sorted(known))}",
                           returncode=EXIT_USAGE)
