"""Page test helpers: a signed-in client, and jobs in a given state through the services."""

from __future__ import annotations

import pytest

from tests.factories import make_job  # noqa: F401  (jobs in a given state, through the services)


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client
