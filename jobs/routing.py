"""Channels routes: streaming uploads (HTTP) and live job status (WebSocket)."""

from jobs.live.routing import websocket_urlpatterns
from jobs.uploads.routing import http_urlpatterns

__all__ = ["http_urlpatterns", "websocket_urlpatterns"]
