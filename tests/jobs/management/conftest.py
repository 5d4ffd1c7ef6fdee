from tests.factories import make_job  # noqa: F401  (jobs in a given state, through the services)
