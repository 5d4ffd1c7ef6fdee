"""Resumable uploads on Uppy Companion's S3 multipart routes, under /api/v1/uploads/s3/.

With `endpoint: "/api/v1/uploads"`, @uppy/aws-s3 (5.x) calls exactly these paths.
"""

from django.urls import path

from . import views

urlpatterns = [
    path("multipart", views.S3MultipartCreateApi.as_view(), name="api-upload-s3-create"),
    path("multipart/<str:upload_id>", views.S3MultipartUploadApi.as_view(), name="api-upload-s3-upload"),
    path("multipart/<str:upload_id>/batch", views.S3MultipartBatchApi.as_view(), name="api-upload-s3-batch"),
    path("multipart/<str:upload_id>/complete", views.S3MultipartCompleteApi.as_view(), name="api-upload-s3-complete"),
    path("multipart/<str:upload_id>/<str:part_number>", views.S3MultipartPartApi.as_view(),
         name="api-upload-s3-part"),
]
