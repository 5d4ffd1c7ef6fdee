"""Starts the real servers for the test session before Django reads its settings.

Loaded with `-p tests.stack_plugin` (pytest.ini), so it runs before pytest-django sets
Django up. Servers named by the environment (DATABASE_URL, REDIS_URL, S3_ENDPOINT_URL)
are used instead; the others start on free ports in a temporary directory and stop at
the end of the session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from devstack.servers import Stack

STACK: Stack | None = None

# Short leases and backoffs, so crash and retry behaviour shows in seconds.
TEST_SETTINGS = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "test-secret-key-not-for-production",
    "DJANGO_SECURE_COOKIES": "0",
    "JOBPLATFORM_ENV_FILE": "",
    "JOB_LEASE_SECONDS": "4",
    "JOB_HEARTBEAT_SECONDS": "1",
    "JOB_STUCK_SECONDS": "4",
    "SWEEP_INTERVAL_SECONDS": "1",
    "JOB_RETRY_BACKOFF_BASE": "0.5",
    "JOB_RETRY_BACKOFF_MAX": "2",
    "JOB_PROGRESS_MIN_INTERVAL": "0.05",
    "S3_MAX_ATTEMPTS": "2",
    "S3_CONNECT_TIMEOUT": "2",
    "S3_READ_TIMEOUT": "10",
    "THROTTLE_JOB_CREATE": "100000/min",
    "THROTTLE_UPLOAD": "100000/min",
    "PROCESSOR_MODULES": "tests.support.diagnostic_processors",
    # Users are made by the hundred; see settings.py.
    "DJANGO_INSECURE_FAST_PASSWORD_HASHING": "1",
}


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    global STACK
    for name, value in TEST_SETTINGS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobplatform.settings.web")
    base = Path(tempfile.mkdtemp(prefix="jobplatform-test-"))
    STACK = Stack(base, durable=False)
    os.environ.update(STACK.start(os.environ))
    if STACK.s3 is not None:
        # The session's own `weed shell` (tests/support/seaweed.py) is a trusted gRPC client.
        os.environ.update(STACK.s3.client_env())
    # Per-run prefix: a shared S3 server (from the environment) may hold other runs' objects.
    os.environ.setdefault("S3_KEY_PREFIX", f"test-{base.name}")


def pytest_unconfigure(config):
    if STACK is not None:
        STACK.stop()
        shutil.rmtree(STACK.base_dir, ignore_errors=True)
