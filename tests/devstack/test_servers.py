"""The embedded development stack: what it starts, and on what disk it still works."""

import subprocess

import boto3
import pytest
from botocore.config import Config

from devstack.servers import S3Server, Stack


def test_the_stack_starts_nothing_for_services_the_environment_names(tmp_path):
    stack = Stack(tmp_path, durable=False)
    env = stack.start({"DATABASE_URL": "postgres://elsewhere/db", "REDIS_URL": "redis://elsewhere:6379/0",
                       "S3_ENDPOINT_URL": "http://elsewhere:9000"})

    assert env == {}
    assert (stack.postgres, stack.redis, stack.s3) == (None, None, None)


@pytest.fixture
def small_disk(tmp_path):
    """A filesystem with 3 GiB free: a tmpfs, which needs the right to mount (root in CI)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3g", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.slow
def test_the_embedded_s3_has_writable_space_for_both_buckets_on_a_small_disk(small_disk):
    server = S3Server(small_disk / "s3", "smalldisk", "smalldisk-secret-key")
    server.start()
    try:
        client = boto3.client("s3", endpoint_url=server.url, aws_access_key_id="smalldisk",
                              aws_secret_access_key="smalldisk-secret-key", region_name="us-east-1",
                              config=Config(retries={"max_attempts": 1}))
        for bucket in ("job-inputs", "job-outputs"):
            client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key="probe", Body=b"written")

        assert [client.get_object(Bucket=b, Key="probe")["Body"].read() for b in ("job-inputs", "job-outputs")] \
            == [b"written", b"written"]
    finally:
        server.stop()
