"""ASGI entry point: HTTP (Django's views, and the streaming upload consumer) and WebSocket.

Django's views run as a WSGI application behind a2wsgi on a fixed pool of WEB_THREADS
threads: the whole middleware chain runs sync in one hop per request, and each thread
keeps its own persistent database connection. Django's stock ASGI handler costs more CPU
per API request (bench/web.py measures both) and runs each request's sync code in a new
thread, so it needs a connection pool too. To go back to it, route
`django.core.asgi.get_asgi_application()` instead, with the pool of bench/stock/stock_settings.py.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobplatform.settings.web")

from a2wsgi import WSGIMiddleware
from django.core.wsgi import get_wsgi_application

django_wsgi_app = get_wsgi_application()  # sets Django up, before the consumers are imported

from django.conf import settings  # noqa: E402
from django.urls import get_resolver  # noqa: E402

import storage  # noqa: E402
from jobplatform.routing import protocol_router  # noqa: E402

application = protocol_router(WSGIMiddleware(django_wsgi_app, workers=settings.WEB_THREADS))

# Pay the one-time costs at start-up, not on the first requests: importing every view
# module (the URLconf) and building the process's S3 client (no request is sent).
get_resolver().url_patterns  # noqa: B018
storage.warm_up()
