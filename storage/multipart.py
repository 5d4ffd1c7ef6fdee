"""Multipart uploads that a client fills itself through presigned part URLs.

A module of its own (rather than more of storage/__init__) so the upload code's needs stay
in one place (the streaming writer is storage.s3.MultipartWriter); like the rest of storage/,
it goes through the configured backend.
"""

from __future__ import annotations

from . import backend

__all__ = ["abort", "complete", "create", "list_open", "sign_part"]


def create(bucket: str, key: str, *, content_type: str = "application/octet-stream") -> str:
    """Starts a multipart upload for a client to fill through presigned part URLs; S3's UploadId."""
    return backend().create_multipart_upload(bucket, key, content_type)


def sign_part(bucket: str, key: str, upload_id: str, part_number: int, *, expires: int) -> str:
    """A URL the client PUTs one part's bytes to; the response's ETag header names the part."""
    return backend().presign_upload_part(bucket, key, upload_id, part_number, expires)


def complete(bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]) -> str:
    """Joins the parts [(part_number, etag), ...] into the object; returns its ETag."""
    return backend().complete_multipart_upload(
        bucket, key, upload_id, [{"PartNumber": number, "ETag": etag} for number, etag in parts])


def abort(bucket: str, key: str, upload_id: str) -> None:
    backend().abort_multipart_upload(bucket, key, upload_id)


def list_open(bucket: str, prefix: str = "") -> list[dict]:
    """Multipart uploads neither completed nor aborted: [{key, upload_id}]."""
    return backend().list_multipart_uploads(bucket, prefix)
