"""Object keys and names: where each object lives, and how its name is shown to a browser."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from django.conf import settings


def prefixed(key: str) -> str:
    """Applies the per-environment key prefix (S3_KEY_PREFIX), if any."""
    return f"{settings.S3_KEY_PREFIX}/{key}" if settings.S3_KEY_PREFIX else key


def safe_filename(name: str, default: str = "upload.bin") -> str:
    """The last path segment, without control characters or separators; never empty or a dot name."""
    name = (name or "").replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*')
    name = name.strip().strip(".")[:200]
    return name or default


def upload_key(owner_id: int, filename: str) -> str:
    return prefixed(f"uploads/{owner_id}/{uuid.uuid4()}/{safe_filename(filename)}")


def owner_upload_prefix(owner_id: int) -> str:
    return prefixed(f"uploads/{owner_id}/")


def output_prefix(job_id: uuid.UUID | str) -> str:
    """The folder in the output bucket that holds everything one job wrote."""
    return prefixed(f"{job_id}/")


def output_key(job_id: uuid.UUID | str, name: str) -> str:
    return output_prefix(job_id) + safe_filename(name, "output.bin")


def content_disposition(filename: str) -> str:
    """An attachment header that keeps a non-ASCII name (RFC 6266 filename*) with an ASCII fallback."""
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
