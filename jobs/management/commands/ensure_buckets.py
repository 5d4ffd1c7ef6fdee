from django.core.management.base import BaseCommand, CommandError

import storage


class Command(BaseCommand):
    help = "Create the input and output buckets (if missing) and their abort-incomplete-uploads rule."

    def handle(self, *args, **options):
        try:
            results = storage.ensure_buckets()
        except storage.StorageError as exc:
            raise CommandError(f"object storage: {exc}") from exc
        for bucket, outcome in results.items():
            self.stdout.write(f"bucket {bucket}: {outcome}")
