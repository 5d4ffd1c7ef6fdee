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


def presign_upload_part(bucket: str, key: str, upload_id: str, part_number: int, expires: int,
                        content_length: int | None = None) -> str:
    """With content_length, Content-Length is a signed header: a PUT of any other length
    does not match the signature and the store refuses it."""
    params = {"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number}
    if content_length is not None:
        params["ContentLength"] = content_length
    with errors(f"s3://{bucket}/{key}"):
        return public_client().generate_presigned_url("upload_part", Params=params, ExpiresIn=expires)
