"""bench/web.py's baseline settings: the web settings with a per-process psycopg pool, which
Django's stock ASGI handler needs (it runs each request's sync code in a new thread, and
per-thread persistent connections would mean a new connection per request)."""

from jobplatform.settings.web import *  # noqa: F403
from jobplatform.settings.web import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 20, "timeout": 10}
