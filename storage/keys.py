"""Object keys and names: where each object lives, and how its name is shown to a browser."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from django.conf import settings

FILENAME_MAX = 200
KEY_MAX_BYTES = 1024  # S3's limit on a key's UTF-8 length


def prefixed(key: str) -> str:
    """Applies the per-environment key prefix (S3_KEY_PREFIX), if any."""
    return f"{settings.S3_KEY_PREFIX}/{key}" if settings.S3_KEY_PREFIX else key


def printable(text: str) -> str:
    """The text without control, format, separator or surrogate characters (CR, LF, NUL,
    U+2028, a lone U+D800...): what is left is safe inside a header or a page."""
    return "".join(ch for ch in text if ch.isprintable())


def safe_filename(name: str, default: str = "upload.bin") -> str:
    """The last path segment, without control characters or separators; never empty or a dot name.

    Every name a user gives (an upload's, the web form's) goes through this before it is
    stored, shown or put into a key."""
    name = (name or "").replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in printable(name) if ch not in '<>:"|?*')
    name = name.strip().strip(".")[:FILENAME_MAX]
    return name or default


def is_valid_key(key: str) -> bool:
    """Whether a client-supplied key could be one this platform wrote, checked before S3 is
    asked: S3 servers answer 400 (or the client refuses) for control characters, a
    backslash, empty or dot segments and over-long keys, and an input error must not look
    like an outage."""
    if not isinstance(key, str) or not key or len(key.encode("utf-8", "replace")) > KEY_MAX_BYTES:
        return False
    if "\\" in key or printable(key) != key:
        return False
    return all(segment not in ("", ".", "..") for segment in key.split("/"))


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
    """An RFC 6266 attachment header for any name: an ASCII `filename` fallback and the
    UTF-8 `filename*` (RFC 8187), with control characters removed from both."""
    name = printable(filename).strip()[:FILENAME_MAX] or "download"
    # The quoted fallback keeps printable ASCII only; `"` and `\` would need escapes some
    # clients get wrong, so they become "_" like every other character it cannot hold.
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
