"""The ASGI handler for Django's own views.

Django's stock ASGIHandler builds an async middleware chain. Our views and most of our
middleware are sync (WhiteNoise is sync-only, and the rest are MiddlewareMixin classes
whose async mode runs every process_request/process_response hook through its own
sync_to_async hop), so a single request crossed between the event loop and its worker
thread about fifteen times; profiling put that at 10+ ms of CPU per API call, more than
the view itself. This handler builds the sync chain, as under WSGI, and runs the whole
chain in one hop into the request's thread. Uploads and WebSockets are served by their
own async consumers before a request reaches Django (see asgi.py), so nothing here needs
to stay on the event loop.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def get_response_async(self, request):
        # get_response sets the urlconf, runs the chain and logs 4xx/5xx, as get_response_async would.
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
