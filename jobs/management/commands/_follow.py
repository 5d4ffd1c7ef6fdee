"""What `submit` and `watch` share: the output contract, the exit codes, following a job.

stdout carries one JSON document and nothing else (the job's result once it completes;
the new job, for `submit` without --wait), so `... | python -m json.tool` or `| jq` works.
Progress bars, messages and log lines go to stderr.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from jobs.models import Job, JobState

POLL_SECONDS = 0.2

# Exit codes, also in each command's --help and in docs/operations.md. 2 is argparse's own
# for a wrong command line; the command uses it too for a bad --type, --param or id.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CODES = {JobState.COMPLETED: EXIT_OK, JobState.FAILED: 3, JobState.DEAD: 4, JobState.CANCELLED: 5}
EXIT_TIMEOUT = 6
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a job stopped by Ctrl-C

EXIT_CODES_HELP = ("Exit codes: 0 COMPLETED, 1 error, 2 usage error, 3 FAILED, 4 DEAD, 5 CANCELLED, "
                   "6 still running at --timeout, 130 interrupted (Ctrl-C).")

LOG_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}


class Stream:
    """Lets tqdm draw on the command's stderr: no newline per write, and not in error red."""

    def __init__(self, wrapper):
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, style_func=lambda s: s, ending="")

    def flush(self) -> None:
        self.wrapper.flush()


@contextmanager
def quiet_logging(verbosity: int) -> Iterator[None]:
    """The platform logs at INFO; a command in a shell shows only warnings unless -v 2 or 3,
    and log lines that do show are written above the progress bars, not through them."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(LOG_LEVELS.get(verbosity, logging.DEBUG))
    try:
        with logging_redirect_tqdm():
            yield
    finally:
        root.setLevel(before)


def print_json(stdout, data) -> None:
    stdout.write(json.dumps(data, indent=2, sort_keys=True))


def follow(job: Job, *, timeout: float | None, stdout, stderr, verbosity: int) -> None:
    """Polls the job until it is terminal: prints its result and returns on COMPLETED, else
    raises CommandError with the exit code of its state. Ctrl-C leaves the job running and
    says how to follow it again."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        with tqdm(total=job.progress_total or None, unit="B", unit_scale=True, desc="job",
                  file=Stream(stderr), disable=verbosity < 1) as bar:
            state = None
            while True:
                job.refresh_from_db()
                if job.state != state:
                    state = job.state
                    bar.set_postfix_str(state)
                bar.update(max(0, job.progress_bytes - bar.n))
                if job.is_terminal or (deadline is not None and time.monotonic() > deadline):
                    break
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        raise CommandError(f"interrupted: job {job.id} keeps running; follow it with: "
                           f"manage.py watch {job.id}", returncode=EXIT_INTERRUPTED) from None
    if not job.is_terminal:
        raise CommandError(f"job {job.id} is still {job.state} after {timeout:g}s; follow it with: "
                           f"manage.py watch {job.id}", returncode=EXIT_TIMEOUT)
    if job.state == JobState.COMPLETED:
        print_json(stdout, job.result)
        return
    raise CommandError(f"job {job.id} is {job.state}: {job.error_code}: {job.error_message}",
                       returncode=EXIT_CODES[job.state])
