"""WebSocket routes for live job status (mounted by jobplatform.asgi behind the session auth)."""

from django.urls import path, re_path

from .consumers import JobDetailConsumer, JobListConsumer, NotFoundConsumer

websocket_urlpatterns = [
    path("ws/jobs/", JobListConsumer.as_asgi()),
    # Any string, not just a UUID: a malformed id gets the same 4404 close as a foreign one,
    # rather than a handshake failure the page would keep retrying.
    re_path(r"^ws/jobs/(?P<job_id>[^/]{1,100})/$", JobDetailConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),
]
