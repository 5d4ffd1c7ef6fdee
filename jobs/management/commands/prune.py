from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

import storage
from jobs import selectors
from jobs.services.maintenance import job_prune


class Command(BaseCommand):
    help = ("Delete finished jobs (COMPLETED, FAILED, CANCELLED, DEAD) that finished more than DAYS days ago, "
            "with their outputs and their input object (unless another remaining job uses it).")

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS", dest="days")
        parser.add_argument("--dry-run", action="store_true", help="list what would be removed, change nothing")

    def handle(self, *args, days, dry_run, **options):
        if days < 0:
            raise CommandError("--older-than must be 0 or more days")
        cutoff = timezone.now() - timedelta(days=days)
        removed = failed = 0
        for job in selectors.jobs_finished_before(cutoff=cutoff).iterator():
            when = job.finished_at or job.updated_at
            what = f"{job.id} {job.job_type} {job.state} (finished {when:%Y-%m-%d %H:%M})"
            if dry_run:
                outputs = len(storage.list_keys(storage.output_bucket(), storage.output_prefix(job.id)))
                self.stdout.write(f"would remove {what}: {outputs} output object(s), input {job.input_key}")
                removed += 1
                continue
            outcome = job_prune(job=job)
            if not outcome.removed:
                self.stdout.write(f"kept {job.id}: it is no longer finished")
            elif outcome.error:
                failed += 1
                self.stderr.write(f"removed {what}, but its objects were not all deleted: {outcome.error}")
            else:
                removed += 1
                input_note = "input deleted" if outcome.input_deleted else "input kept (another job uses it)"
                self.stdout.write(f"removed {what}: {outcome.outputs} output object(s), {input_note}")
        verb = "would remove" if dry_run else "removed"
        self.stdout.write(f"{verb} {removed} job(s) finished before {cutoff:%Y-%m-%d %H:%M} UTC"
                          + (f"; {failed} with storage errors" if failed else ""))
