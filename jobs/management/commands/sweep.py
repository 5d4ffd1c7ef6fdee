from django.core.management.base import BaseCommand

from jobs.sweeper import sweep


class Command(BaseCommand):
    help = "Run one pass of the sweeper (what Celery beat runs every SWEEP_INTERVAL_SECONDS) and print the counts."

    def handle(self, *args, **options):
        counts = sweep()
        for name, count in counts.items():
            self.stdout.write(f"{name}: {count}")
        self.stdout.write(f"total: {sum(counts.values())}")
