"""API test helpers: token-authenticated clients, and the shared jobs-in-a-state factory."""

from __future__ import annotations

from tests.factories import CSV, make_job  # noqa: F401  (jobs in a given state, through the services)
from tests.support.api import api, error_of, other_api, staff_api, token_client  # noqa: F401


def job_reload(job):
    job.refresh_from_db()
    return job
