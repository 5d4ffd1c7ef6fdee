"""Multipart uploads that a client fills itself through presigned part URLs (S3 only).

obstore has no public API to start, complete or list a multipart upload that someone else
fills, so these go through boto3, as do the part URLs.
"""

from __future__ import annotations

from django.conf import settings

from . import presign
from .boto import client, errors, public_client
from .errors import StorageError

__all__ = ["abort", "complete", "create", "list_open", "list_parts", "part_length", "sign_part"]


def _require_s3() -> None:
    if settings.STORAGE_BACKEND != "s3":
        raise StorageError("direct multipart uploads need S3 storage (STORAGE_BACKEND=s3)")


def create(bucket: str, key: str, *, content_type: str = "application/octet-stream") -> str:
    """Starts a multipart upload for a client to fill through presigned part URLs; S3's UploadId."""
    _require_s3()
    with errors(f"s3://{bucket}/{key}"):
        return client().create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)["UploadId"]


def part_length(size: int, part_size: int, part_number: int) -> int:
    """The length of part `part_number` (from 1) when `size` bytes are cut into `part_size` parts."""
    return max(0, min(part_size, size - (part_number - 1) * part_size))


def sign_part(bucket: str, key: str, upload_id: str, part_number: int, *, expires: int,
              content_length: int | None = None, checksum_sha256: str | None = None) -> str:
    """A URL the client PUTs one part's bytes to; the response's ETag header names the part.

    With content_length the URL signs it, so the store refuses a PUT of any other length
    (403 SignatureDoesNotMatch) instead of storing more than the part was declared to hold.
    With checksum_sha256 (base64) the URL signs x-amz-checksum-sha256: the client must send
    that header, and the store refuses a body whose SHA-256 differs (400 BadDigest)."""
    _require_s3()
    if checksum_sha256 is None:
        return presign.presign_upload_part(bucket, key, upload_id, part_number, expires, content_length)
    params = {"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number,
              "ChecksumSHA256": checksum_sha256}
    if content_length is not None:
        params["ContentLength"] = content_length
    with errors(f"s3://{bucket}/{key}"):
        return public_client().generate_presigned_url("upload_part", Params=params, ExpiresIn=expires)


def list_parts(bucket: str, key: str, upload_id: str, *, page_size: int = 1000) -> list[dict]:
    """Every part stored so far, [{PartNumber, Size, ETag[, ChecksumSHA256]}] in part order. ListParts answers
    at most 1,000 parts a call (page_size fewer), so this follows PartNumberMarker to the end."""
    _require_s3()
    parts: list[dict] = []
    marker = 0
    with errors(f"s3://{bucket}/{key}"):
        while True:
            page = client().list_parts(Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=page_size,
                                       PartNumberMarker=marker)
            parts += [{"PartNumber": p["PartNumber"], "Size": p["Size"], "ETag": p["ETag"],
                       **({"ChecksumSHA256": p["ChecksumSHA256"]} if p.get("ChecksumSHA256") else {})}
                      for p in page.get("Parts", [])]
            following = int(page.get("NextPartNumberMarker") or 0)
            # A server that says it is truncated but does not move the marker would loop forever.
            if not page.get("IsTruncated") or following <= marker:
                return parts
            marker = following


def complete(bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]) -> str:
    """Joins the parts [(part_number, etag), ...] into the object; returns its ETag."""
    _require_s3()
    with errors(f"s3://{bucket}/{key}"):
        r = client().complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]})
    return r.get("ETag", "").strip('"')


def abort(bucket: str, key: str, upload_id: str) -> None:
    _require_s3()
    with errors(f"s3://{bucket}/{key}"):
        client().abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def list_open(bucket: str, prefix: str = "") -> list[dict]:
    """Multipart uploads neither completed nor aborted: [{key, upload_id, initiated}], every
    page of them; `initiated` is the server's time (an aware datetime) the upload started."""
    if settings.STORAGE_BACKEND != "s3":
        return []
    uploads = []
    with errors(f"s3://{bucket}"):
        for page in client().get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            uploads += [{"key": u["Key"], "upload_id": u["UploadId"], "initiated": u["Initiated"]}
                        for u in page.get("Uploads", [])]
    return uploads
