"""HTTP routes served ahead of Django (see jobplatform/asgi.py): the streaming uploads.

`/api/v1/uploads/multipart/...` and `/api/v1/uploads/s3/...` are left to Django: those are
ordinary DRF views for direct uploads, so a file cannot be PUT under the name `multipart`.
"""

from django.urls import re_path

from .consumers import UploadApp

http_urlpatterns = [
    re_path(r"^api/v1/uploads/(?!multipart(?:/|$)|s3/)", UploadApp()),
]
