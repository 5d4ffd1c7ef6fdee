"""ASGI entry point: HTTP (Django, plus the streaming upload consumer) and WebSocket."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobplatform.settings")
# Django runs every request's sync code in a new thread; pool connections per process
# rather than opening one per request (see DB_POOL in settings).
os.environ.setdefault("DB_POOL", "1")

import django

django.setup(set_prefix=False)  # before the consumers are imported

from jobplatform.handlers import SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import get_resolver, re_path  # noqa: E402

import storage  # noqa: E402
from jobs.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter({
    # Upload paths go to a consumer that streams each body chunk into S3 as it arrives;
    # plain Django would spool the whole body to disk first.
    "http": URLRouter([*http_urlpatterns, re_path(r"", django_asgi_app)]),
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})

# Pay the one-time costs at start-up, not on the first requests: importing every view
# module (the URLconf) and building the process's S3 client (no request is sent).
get_resolver().url_patterns  # noqa: B018
storage.warm_up()
