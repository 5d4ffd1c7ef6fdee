"""The ASGI handler for Django's own views.

Django's stock ASGIHandler builds an async middleware chain. Our views and most of our
middleware are sync (WhiteNoise is sync-only, and the rest are MiddlewareMixin classes
whose async mode runs every process_request/process_response hook through its own
sync_to_async hop), so a single request crossed between the event loop and its worker
thread about fifteen times; profiling put that at 10+ ms of CPU per API call, more than
the view itself. This handler builds the sync chain, as under WSGI, and runs it in one
hop.

That hop goes to a fixed pool of threads (WEB_THREADS), not to the new thread Django
starts for every request (its ThreadSensitiveContext), and it covers the whole sync part
of a request: the request_started signal, the chain, and, for an ordinary response,
response.close() and its request_finished signal (which hands the database connection
back to the pool). The event loop only reads the body and writes the bytes. Streaming
responses are sent as Django sends them, then closed in the pool. Uploads and WebSockets
are served by their own async consumers before a request reaches Django (see asgi.py).
"""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.urls import set_script_prefix


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.executor = ThreadPoolExecutor(max_workers=settings.WEB_THREADS, thread_name_prefix="django-request")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        loop = asyncio.get_running_loop()
        try:
            context = contextvars.copy_context()
            response = await loop.run_in_executor(self.executor, context.run, self._respond, scope, body_file)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:
                    await loop.run_in_executor(self.executor, context.run, response.close)
        finally:
            body_file.close()

    def _respond(self, scope, body_file):
        """In a pool thread: the request's whole sync part. An ordinary response comes back
        closed already (its content stays); a streaming one is closed after it was sent."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            # get_response sets the urlconf, runs the chain and logs 4xx/5xx, as get_response_async would.
            response = self.get_response(request)
            response._handler_class = self.__class__
        if not response.streaming:
            response.close()
        return response
