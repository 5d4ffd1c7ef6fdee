"""The per-user upload rate: settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["upload"]."""

from __future__ import annotations

from jobs.api.throttles import ScopedThrottle


class UploadThrottle(ScopedThrottle):
    """Counts streamed uploads and direct-upload creates alike: each is one file."""

    scope = "upload"
