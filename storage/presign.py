"""Presigned URLs: a browser downloads an object, or PUTs one part of a multipart upload,
straight from/to S3 with a link that expires."""

from __future__ import annotations

from .boto import errors, public_client
from .keys import content_disposition


def presigned_get_url(bucket: str, key: str, *, expires: int, filename: str | None) -> str:
    params = {"Bucket": bucket, "Key": key}
    if filename:
        params["ResponseContentDisposition"] = content_disposition(filename)
    with errors(f"s3://{bucket}/{key}"):
        return public_client().generate_presigned_url("get_object", Params=params, ExpiresIn=expires)


def presign_upload_part(bucket: str, key: str, upload_id: str, part_number: int, expires: int) -> str:
    with errors(f"s3://{bucket}/{key}"):
        return public_client().generate_presigned_url(
            "upload_part", Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number},
            ExpiresIn=expires)
