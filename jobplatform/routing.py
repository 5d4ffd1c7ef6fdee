"""The ASGI protocol router around Django's views. Import it after Django is set up (the
consumers it routes to import models)."""

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import re_path

from jobplatform.admission import BodyLimit
from jobs.routing import http_urlpatterns, websocket_urlpatterns
from jobs.uploads.lifespan import Lifespan


def protocol_router(django_app) -> ProtocolTypeRouter:
    return ProtocolTypeRouter({
        # Upload paths go to a consumer that streams each body chunk into S3 as it arrives;
        # plain Django would spool the whole body to disk first. Every other body is refused
        # at the door once it passes its path's limit, before Django reads any of it.
        "http": URLRouter([*http_urlpatterns, re_path(r"", BodyLimit(django_app))]),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        # Its shutdown lets uploads that the server's shutdown interrupted abort first.
        "lifespan": Lifespan(),
    })
