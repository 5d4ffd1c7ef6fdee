"""Page test helpers: a signed-in client, and queued jobs on a small people.csv by default."""

from __future__ import annotations

import pytest

from tests.factories import job_maker

PEOPLE = b"name,age\nann,31\nbob,42\n"


@pytest.fixture
def make_job(upload):
    return job_maker(upload, state="QUEUED", data=PEOPLE, name="people.csv")


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client
