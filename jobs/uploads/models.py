"""Who owns which direct (presigned) multipart upload.

S3 knows nothing of our users: this row is what ties an upload to its owner, its key and
the size the owner declared, so that signing, completing and aborting check both.
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
    s3_upload_id = models.CharField(max_length=1024)
    bucket = models.CharField(max_length=255)
    key = models.CharField(max_length=1024)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255)
    size = models.BigIntegerField(help_text="the size the client declared; checked on complete")
    part_size = models.BigIntegerField()
    part_count = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "jobs"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"
