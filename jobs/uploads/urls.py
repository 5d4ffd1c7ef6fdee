"""Direct (presigned) multipart uploads, under /api/v1/uploads/multipart/."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.MultipartCreateApi.as_view(), name="api-upload-multipart-create"),
    path("<str:upload_id>", views.MultipartAbortApi.as_view(), name="api-upload-multipart-abort"),
    path("<str:upload_id>/parts", views.MultipartPartsApi.as_view(), name="api-upload-multipart-parts"),
    path("<str:upload_id>/complete", views.MultipartCompleteApi.as_view(), name="api-upload-multipart-complete"),
]
