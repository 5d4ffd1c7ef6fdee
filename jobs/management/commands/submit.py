import json
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm
from tqdm.utils import CallbackIOWrapper

import storage
from jobs.errors import JobError
from jobs.models import Job, JobState
from jobs.services.create import job_create_from_file
from processors import ProcessorError, get_processor

POLL_SECONDS = 0.2
EXIT_CODES = {JobState.COMPLETED: 0, JobState.FAILED: 2, JobState.DEAD: 3, JobState.CANCELLED: 4}
EXIT_TIMEOUT = 5


class _Stream:
    """Lets tqdm draw on the command's stderr: no newline per write, and not in error red."""

    def __init__(self, wrapper):
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, style_func=lambda s: s, ending="")

    def flush(self) -> None:
        self.wrapper.flush()


def parse_params(pairs: list[str]) -> dict:
    """k=v pairs; a value that parses as JSON is used as such (3, true, [1]), else it is a string."""
    params = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--param {pair!r}: expected NAME=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        params[name.strip()] = value
    return params


class Command(BaseCommand):
    help = ("Upload FILE to object storage and create a job on it. With --wait, follow the job to the end and "
            "print its result. Exit codes: 0 COMPLETED, 2 FAILED, 3 DEAD, 4 CANCELLED, 5 timed out, 1 other errors.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="the file to process")
        parser.add_argument("--type", required=True, dest="job_type", help="the job type, e.g. CSV_ROW_COUNT")
        parser.add_argument("--param", action="append", default=[], dest="params", metavar="NAME=VALUE",
                            help="a job parameter (repeatable); JSON values are parsed, others are strings")
        parser.add_argument("--owner", help="username that owns the job (default: the first superuser)")
        parser.add_argument("--wait", action="store_true", help="show progress, wait for the end, print the result")
        parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait with --wait (default 600)")

    def handle(self, *args, file, job_type, params, owner, wait, timeout, **options):
        # Everything that can be checked is checked before a byte is uploaded.
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file}: no such file" if not path.exists() else f"{file}: not a regular file")
        size = path.stat().st_size
        if size > settings.UPLOAD_MAX_BYTES:
            raise CommandError(f"{file}: {size} bytes is over the upload limit of {settings.UPLOAD_MAX_BYTES}")
        if timeout <= 0:
            raise CommandError("--timeout must be positive")
        try:
            processor = get_processor(job_type)
            clean = processor.validate_params(parse_params(params))
        except ProcessorError as exc:
            raise CommandError(exc.message) from None
        user = self._owner(owner)

        # The service stores the file, creates the job, and deletes the object again if the
        # job cannot be created.
        try:
            with tqdm(total=size, unit="B", unit_scale=True, desc="upload", disable=not wait,
                      file=_Stream(self.stderr)) as bar, path.open("rb") as source:
                job = job_create_from_file(owner=user, job_type=job_type, params=clean, filename=path.name,
                                           fileobj=CallbackIOWrapper(bar.update, source, "read")).job
        except (OSError, storage.StorageError) as exc:
            raise CommandError(f"upload failed: {exc}") from None
        except JobError as exc:
            raise CommandError(f"job not created: {exc.message}") from None
        self.stdout.write(f"job {job.id} created: {job_type} on {path.name} ({size} bytes) as {user.get_username()}")
        if wait:
            self._wait(job, timeout)

    def _owner(self, username: str | None):
        User = get_user_model()
        if username:
            user = User.objects.filter(username=username).first()
            if user is None:
                raise CommandError(f"--owner: no user named {username!r}")
            return user
        user = User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if user is None:
            raise CommandError("no superuser exists to own the job: pass --owner USERNAME "
                               "(or create one: manage.py createsuperuser / bootstrap_admin)")
        return user

    def _wait(self, job: Job, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with tqdm(total=job.progress_total or None, unit="B", unit_scale=True, desc="job",
                  file=_Stream(self.stderr)) as bar:
            state = None
            while True:
                job.refresh_from_db()
                if job.state != state:
                    state = job.state
                    bar.set_postfix_str(state)
                bar.update(max(0, job.progress_bytes - bar.n))
                if job.is_terminal or time.monotonic() > deadline:
                    break
                time.sleep(POLL_SECONDS)
        if not job.is_terminal:
            raise CommandError(f"job {job.id} is still {job.state} after {timeout:g}s", returncode=EXIT_TIMEOUT)
        if job.state == JobState.COMPLETED:
            self.stdout.write(json.dumps(job.result, indent=2, sort_keys=True))
            return
        raise CommandError(f"job {job.id} is {job.state}: {job.error_code}: {job.error_message}",
                           returncode=EXIT_CODES[job.state])
