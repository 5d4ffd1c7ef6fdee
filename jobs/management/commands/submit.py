import json
import signal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm
from tqdm.utils import CallbackIOWrapper

import storage
from jobs.errors import JobError
from jobs.services.create import job_create_from_file
from processors import ProcessorError, get_processor

from ._follow import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Stream,
    follow,
    print_json,
    quiet_logging,
)


def parse_params(pairs: list[str]) -> dict:
    """k=v pairs; a value that parses as JSON is used as such (3, true, [1]), else it is a string."""
    params = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--param {pair!r}: expected NAME=VALUE", returncode=EXIT_USAGE)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        params[name.strip()] = value
    return params


class UploadInterrupt:
    """The SIGINT handler while the file is sent. Ctrl-C before the last byte is read stops the
    upload (the service aborts its multipart upload); any later one, and any while the
    abort runs, waits until the service returns, so it never leaves a job half created or
    says "no job" about a job that exists."""

    def __init__(self):
        self.armed = True
        self.pending = False

    def __call__(self, *_) -> None:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        self.pending = True


class DisarmAtEnd:
    """The file as the service reads it; at its end, Ctrl-C no longer stops the upload."""

    def __init__(self, source, interrupt: UploadInterrupt):
        self.source, self.interrupt = source, interrupt

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if not data:
            self.interrupt.armed = False
        return data


class Command(BaseCommand):
    help = ("Upload FILE to object storage and create a job on it. Prints the job as JSON on stdout; with "
            "--wait, follows the job (progress on stderr) and prints only its result JSON on stdout. "
            + EXIT_CODES_HELP)

    def add_arguments(self, parser):
        parser.add_argument("file", help="the file to process")
        parser.add_argument("--type", required=True, dest="job_type", help="the job type, e.g. CSV_ROW_COUNT")
        parser.add_argument("--param", action="append", default=[], dest="params", metavar="NAME=VALUE",
                            help="a job parameter (repeatable); JSON values are parsed, others are strings")
        parser.add_argument("--owner", help="username that owns the job (default: the first superuser)")
        parser.add_argument("--wait", action="store_true", help="follow the job to the end and print its result")
        parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait with --wait (default 600)")

    def handle(self, *args, file, job_type, params, owner, wait, timeout, verbosity, **options):
        # Everything that can be checked is checked before a byte is uploaded.
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file}: no such file" if not path.exists() else f"{file}: not a regular file")
        size = path.stat().st_size
        if size > settings.UPLOAD_MAX_BYTES:
            raise CommandError(f"{file}: {size} bytes is over the upload limit of {settings.UPLOAD_MAX_BYTES}")
        if timeout <= 0:
            raise CommandError("--timeout must be positive", returncode=EXIT_USAGE)
        try:
            processor = get_processor(job_type)
            clean = processor.validate_params(parse_params(params))
        except ProcessorError as exc:
            raise CommandError(exc.message, returncode=EXIT_USAGE) from None
        user = self._owner(owner)

        with quiet_logging(verbosity):
            job = self._upload(path, size=size, job_type=job_type, params=clean, user=user, verbosity=verbosity)
            if verbosity >= 1:
                self.stderr.write(f"job {job.id} created: {job_type} on {path.name} ({size} bytes) "
                                  f"as {user.get_username()}", style_func=lambda s: s)
            if not wait:
                print_json(self.stdout, {"id": str(job.id), "job_type": job.job_type, "state": job.state,
                                         "input_name": job.input_name, "input_size": job.input_size})
                return
            follow(job, timeout=timeout, stdout=self.stdout, stderr=self.stderr, verbosity=verbosity)

    def _upload(self, path: Path, *, size: int, job_type: str, params: dict, user, verbosity: int):
        # The service stores the file, creates the job, and deletes the object again if the
        # job cannot be created; an interrupted upload aborts its multipart upload.
        previous = signal.getsignal(signal.SIGINT)
        interrupt = UploadInterrupt()
        ours = previous is signal.default_int_handler  # Ctrl-C is ours to handle (not under a test runner's)
        if ours:
            signal.signal(signal.SIGINT, interrupt)
        try:
            with tqdm(total=size, unit="B", unit_scale=True, desc="upload", disable=verbosity < 1,
                      file=Stream(self.stderr)) as bar, path.open("rb") as source:
                reader = CallbackIOWrapper(bar.update, DisarmAtEnd(source, interrupt), "read")
                job = job_create_from_file(owner=user, job_type=job_type, params=params, filename=path.name,
                                           fileobj=reader).job
        except KeyboardInterrupt:
            raise CommandError("interrupted: upload aborted, no job created", returncode=EXIT_INTERRUPTED) from None
        except (OSError, storage.StorageError) as exc:
            raise CommandError(f"upload failed: {exc}") from None
        except JobError as exc:
            raise CommandError(f"job not created: {exc.message}") from None
        finally:
            if ours:
                signal.signal(signal.SIGINT, previous)
        if interrupt.pending:
            raise CommandError(f"interrupted: job {job.id} was created and keeps running; follow it with: "
                               f"manage.py watch {job.id}", returncode=EXIT_INTERRUPTED)
        return job

    def _owner(self, username: str | None):
        User = get_user_model()
        if username:
            user = User.objects.filter(username=username).first()
            if user is None:
                raise CommandError(f"--owner: no user named {username!r}", returncode=EXIT_USAGE)
            return user
        user = User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if user is None:
            raise CommandError("no superuser exists to own the job: pass --owner USERNAME "
                               "(or create one: manage.py createsuperuser / bootstrap_admin)")
        return user
