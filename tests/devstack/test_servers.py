"""The embedded development stack leaves alone what the environment names."""

from devstack.servers import Stack


def test_the_stack_starts_nothing_for_services_the_environment_names(tmp_path):
    stack = Stack(tmp_path, durable=False)
    env = stack.start({"DATABASE_URL": "postgres://elsewhere/db", "REDIS_URL": "redis://elsewhere:6379/0",
                       "S3_ENDPOINT_URL": "http://elsewhere:9000"})

    assert env == {}
    assert (stack.postgres, stack.redis, stack.s3) == (None, None, None)
