"""Bucket set-up: create the bucket if missing, with a rule that aborts stale multipart uploads."""

from __future__ import annotations

import botocore.exceptions
from django.conf import settings

from .boto import client, errors


def ensure_bucket(bucket: str, *, abort_incomplete_days: int = 1) -> str:
    c = client()
    with errors(f"s3://{bucket}"):
        try:
            c.head_bucket(Bucket=bucket)
            created = "exists"
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                raise
            kwargs = {"Bucket": bucket}
            if settings.S3_REGION and settings.S3_REGION != "us-east-1" and not settings.S3_ENDPOINT_URL:
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.S3_REGION}
            c.create_bucket(**kwargs)
            created = "created"
    try:
        c.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
            "ID": "abort-incomplete-multipart-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": abort_incomplete_days}}]})
        lifecycle = "lifecycle rule set"
    except botocore.exceptions.ClientError as exc:
        # Not every S3-compatible server implements lifecycle rules; the upload paths abort
        # their own failed uploads regardless.
        lifecycle = f"lifecycle rule not supported ({exc.response.get('Error', {}).get('Code')})"
    return f"{created}, {lifecycle}"
