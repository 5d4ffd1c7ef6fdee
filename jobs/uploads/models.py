"""Who owns which direct (presigned) multipart upload.

S3 knows nothing of our users: this row is what ties an upload to its owner, its key and
the size the owner declared, so that signing, completing and aborting check both.
Uploads on Companion's route shape (`/s3/multipart`) let the client choose its part size, so
theirs has no part_size/part_count, and size only if the client declared one.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class UploadSession(models.Model):
    class Status(models.TextChoices):
        OPEN = "OPEN"
        COMPLETED = "COMPLETED"
        ABORTED = "ABORTED"

    # The id clients use in URLs; S3's UploadId stays server-side (its alphabet is the server's).
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="upload_sessions")
    s3_upload_id = models.CharField(max_length=1024, db_index=True)
    bucket = models.CharField(max_length=255)
    key = models.CharField(max_length=1024)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255)
    size = models.BigIntegerField(null=True, blank=True,
                                  help_text="the size the client declared (checked on complete), else the stored one")
    part_size = models.BigIntegerField(null=True, blank=True)
    part_count = models.PositiveIntegerField(null=True, blank=True)
    # Hex SHA-256 of the completed object, read back from storage; empty until then.
    sha256 = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "jobs"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"
