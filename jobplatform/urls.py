from django.contrib import admin
from django.urls import include, path

from jobs import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("jobs.api.urls")),
    path("", include("jobs.web.urls")),
]

# JSON errors for /api/ paths, Django's pages elsewhere.
handler400 = "jobs.api.errors.handler400"
handler403 = "jobs.api.errors.handler403"
handler404 = "jobs.api.errors.handler404"
handler500 = "jobs.api.errors.handler500"
