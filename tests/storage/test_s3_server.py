"""The S3 server the tests run against checks request signatures, as production's does."""

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from django.conf import settings

import storage


def test_the_s3_server_refuses_a_wrong_key_pair():
    key = storage.prefixed("s3-server/secret.txt")
    storage.put_bytes(storage.input_bucket(), key, b"secret", "text/plain")
    client = boto3.client("s3", endpoint_url=settings.S3_ENDPOINT_URL, aws_access_key_id=settings.S3_ACCESS_KEY_ID,
                          aws_secret_access_key="not-the-secret-key", region_name=settings.S3_REGION,
                          config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.get_object(Bucket=settings.S3_INPUT_BUCKET, Key=key)

    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
