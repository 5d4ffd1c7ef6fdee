"""bench/web.py's baseline application: the same router around Django's stock ASGI handler."""
# Imported from bench/stock (bench/web.py passes --app-dir): in bench/, bench/processors.py shadows the package.

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stock_settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from jobplatform.routing import protocol_router

application = protocol_router(django_asgi_app)
