"""The ASGI lifespan protocol for the web process: its shutdown lets interrupted uploads abort.

Uvicorn cancels the requests still running when its graceful-shutdown timeout
(--timeout-graceful-shutdown) runs out, then sends lifespan.shutdown and, once that is
answered, exits at once by re-raising the signal. Anything not finished by then is lost,
so the shutdown waits (at most UPLOAD_SHUTDOWN_WAIT_SECONDS) for the cancelled uploads'
multipart aborts. An upload still open after that is left to the periodic clean-up.
"""

from __future__ import annotations

from django.conf import settings

from .consumers import wait_for_uploads


class Lifespan:
    async def __call__(self, scope: dict, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await wait_for_uploads(settings.UPLOAD_SHUTDOWN_WAIT_SECONDS)
                await send({"type": "lifespan.shutdown.complete"})
                return
