import pytest

from tests.api.conftest import make_job  # noqa: F401  (the same jobs-in-a-state factory)


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client
