from django.contrib import admin
from django.urls import include, path

from jobs import health, metrics_export

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_export.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    # Before api/v1/, whose last route answers every other path under it.
    path("api/v1/webhooks/", include("webhooks.api.urls")),
    path("api/v1/", include("jobs.api.urls")),
    path("", include("jobs.web.urls")),
]

# JSON errors for /api/ paths, Django's pages elsewhere.
handler400 = "jobs.api.errors.handler400"
handler403 = "jobs.api.errors.handler403"
handler404 = "jobs.api.errors.handler404"
handler500 = "jobs.api.errors.handler500"
