"""Settings of the web process (Uvicorn) and of manage.py: the whole site."""

from .base import *  # noqa: F403
from .base import env_int

ROOT_URLCONF = "jobplatform.urls"
ASGI_APPLICATION = "jobplatform.asgi.application"

# Threads that run Django's views (jobplatform/asgi.py): at most this many requests are in
# views at once, and each thread keeps one persistent database connection.
WEB_THREADS = env_int("WEB_THREADS", 16)
