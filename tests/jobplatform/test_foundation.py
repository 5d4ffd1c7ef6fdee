"""The foundation: real servers, health endpoints, settings that refuse unsafe production."""

import subprocess
import sys

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from django.conf import settings

import storage
from storage import multipart

pytestmark = pytest.mark.django_db


def raw_s3_client(access_key: str, secret_key: str):
    return boto3.client("s3", endpoint_url=settings.S3_ENDPOINT_URL, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, region_name=settings.S3_REGION,
                        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required", retries={"max_attempts": 1}))


def test_object_written_through_storage_is_read_back_with_plain_boto3():
    key = storage.prefixed("foundation/hello.txt")
    storage.put_bytes(storage.input_bucket(), key, b"hello from storage/", "text/plain")

    client = raw_s3_client(settings.S3_ACCESS_KEY_ID, settings.S3_SECRET_ACCESS_KEY)
    body = client.get_object(Bucket=settings.S3_INPUT_BUCKET, Key=key)["Body"].read()

    assert body == b"hello from storage/"


def test_s3_server_refuses_a_wrong_key_pair():
    key = storage.prefixed("foundation/secret.txt")
    storage.put_bytes(storage.input_bucket(), key, b"secret", "text/plain")

    client = raw_s3_client(settings.S3_ACCESS_KEY_ID, "not-the-secret-key")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.get_object(Bucket=settings.S3_INPUT_BUCKET, Key=key)

    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_streaming_writer_uploads_multipart_objects_intact():
    key = storage.prefixed("foundation/big.bin")
    chunk = bytes(range(256)) * 4096  # 1 MiB
    with storage.open_write(storage.input_bucket(), key) as writer:
        for _ in range(20):  # 20 MiB: three parts of 8 MiB
            writer.write(chunk)

    assert storage.head(storage.input_bucket(), key).size == 20 * len(chunk)
    with storage.open_read(storage.input_bucket(), key) as stream:
        assert stream.read(len(chunk)) == chunk
    assert storage.list_keys(storage.input_bucket(), storage.prefixed("foundation/big")) == [key]


def test_a_failed_streaming_write_leaves_no_object_and_no_open_upload():
    key = storage.prefixed("foundation/aborted.bin")
    with pytest.raises(RuntimeError), storage.open_write(storage.input_bucket(), key) as writer:
        writer.write(b"x" * (9 * 1024 * 1024))
        raise RuntimeError("client went away")

    with pytest.raises(storage.ObjectNotFound):
        storage.head(storage.input_bucket(), key)
    assert [u for u in multipart.list_open(storage.input_bucket()) if u["key"] == key] == []


def test_healthz_is_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_with_every_service_up(client):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["failed"] == []
    assert set(body["checks"]) == {"database", "redis", "storage"}


def test_readyz_names_redis_when_redis_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["redis"]


def _settings_import(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import jobplatform.settings.web"], env=env, capture_output=True,
                          text=True, cwd=settings.BASE_DIR)


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "0", "DATABASE_URL": "postgres://x@127.0.0.1/x",
           "JOBPLATFORM_ENV_FILE": ""}
    result = _settings_import(env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_production_settings_refuse_the_default_s3_credentials():
    env = {"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "0", "DATABASE_URL": "postgres://x@127.0.0.1/x",
           "DJANGO_SECRET_KEY": "a-real-secret", "JOBPLATFORM_ENV_FILE": ""}
    result = _settings_import(env)
    assert result.returncode != 0
    assert "S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY are the development defaults" in result.stderr
