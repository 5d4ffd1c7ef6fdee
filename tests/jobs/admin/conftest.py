import pytest

from tests.factories import make_job  # noqa: F401  (jobs in a given state, through the services)


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client
