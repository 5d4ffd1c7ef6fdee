from django.urls import include, path, re_path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from . import views
from .errors import not_found

urlpatterns = [
    path("uploads/multipart/", include("jobs.uploads.urls")),
    path("uploads/s3/", include("jobs.uploads.s3_urls")),
    path("jobs/", views.JobListCreateApi.as_view(), name="api-job-list"),
    path("jobs/<uuid:job_id>/", views.JobDetailApi.as_view(), name="api-job-detail"),
    path("jobs/<uuid:job_id>/result-url", views.JobResultUrlApi.as_view(), name="api-job-result-url"),
    path("jobs/<uuid:job_id>/cancel", views.JobCancelApi.as_view(), name="api-job-cancel"),
    path("jobs/<uuid:job_id>/retry", views.JobRetryApi.as_view(), name="api-job-retry"),
    path("dead-letters/", views.DeadLetterListApi.as_view(), name="api-dead-letter-list"),
    path("dead-letters/<int:pk>/replay", views.DeadLetterReplayApi.as_view(), name="api-dead-letter-replay"),
    path("job-types/", views.JobTypeListApi.as_view(), name="api-job-types"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # Last: any other path under /api/v1/ answers in the API's error shape, in DEBUG too.
    re_path(r"^", not_found, name="api-not-found"),
]
