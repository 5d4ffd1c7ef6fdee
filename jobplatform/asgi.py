"""ASGI entry point: HTTP (Django, plus the streaming upload consumer) and WebSocket."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobplatform.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()  # sets Django up before the consumers are imported

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from jobs.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter({
    # Upload paths go to a consumer that streams each body chunk into S3 as it arrives;
    # plain Django would spool the whole body to disk first.
    "http": URLRouter([*http_urlpatterns, re_path(r"", django_asgi_app)]),
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})
