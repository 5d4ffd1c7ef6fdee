"""Admission before work: request bodies over their path's limit are refused at the door.

`BodyLimit` is an ASGI middleware in front of Django's views (a2wsgi's WSGIMiddleware).
a2wsgi buffers nothing itself, it reads the body from receive() as Django asks for it, but
Django spools a multipart body's files to a temp file and reads a form or JSON body whole,
all before authentication, CSRF or any view runs. So the limit is checked here first:

- a declared Content-Length over the limit is answered 413 before one byte is read;
- a chunked body is read here, counting its bytes as they arrive, and answered 413 the
  moment it passes the limit (reading stops, the connection is closed). One within the
  limit is handed on whole with a Content-Length, which is the only framing Django's WSGI
  request reads (without one it sees an empty body). One that stalls for
  BODY_IDLE_TIMEOUT_SECONDS is answered 408.

Each 413 ends with `Connection: close`, so the server stops reading the rest of the body.
Responses made outside Django (here and in the upload consumer) carry the same security
headers as Django's pages: `security_headers` asks Django's own middleware for them.
"""

from __future__ import annotations

import asyncio
import io

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.utils.html import escape
from django.utils.module_loading import import_string

from jobs.api.errors import error_body
from jobs.api.rendering import render_json

# Django's middleware that only add headers to a response; their process_response is asked
# for the headers, so a change to their settings (or removing one) shows here too.
HEADER_MIDDLEWARE = ("django.middleware.security.SecurityMiddleware",
                     "django.middleware.clickjacking.XFrameOptionsMiddleware")
API_PREFIX = "/api/"


def _no_response(request):
    return None


def security_headers(scope: dict) -> list[tuple[bytes, bytes]]:
    """The headers Django's security middleware would add to a page answering this request."""
    # Only the scheme and headers matter (HSTS goes to secure requests); not the path or
    # query, which need not be valid UTF-8.
    request = ASGIRequest({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                           "scheme": scope.get("scheme", "http"), "headers": scope.get("headers", [])},
                          io.BytesIO())
    response = HttpResponse()
    del response["Content-Type"]
    for path in settings.MIDDLEWARE:
        if path in HEADER_MIDDLEWARE:
            import_string(path)(_no_response).process_response(request, response)
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]


def with_security_headers(scope: dict, send):
    """`send` for an ASGI app that answers outside Django: its response gets the page headers."""

    async def secured_send(message: dict) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(name, value) for name, value in security_headers(scope) if name not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return secured_send


def body_limit(path: str) -> int:
    if path.startswith(API_PREFIX):
        return settings.BODY_LIMIT_API_BYTES
    if path.rstrip("/") + "/" in settings.BODY_LIMIT_LOGIN_PATHS:
        return settings.BODY_LIMIT_LOGIN_BYTES
    return settings.BODY_LIMIT_PAGE_BYTES


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length, or None if absent or not a number (the server has refused those)."""
    for name, value in headers:
        if name == b"content-length":
            value = value.strip()
            return int(value) if value.isdigit() else None
    return None


def is_chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"transfer-encoding" for name, _ in headers)


async def refuse_too_large(scope: dict, send, limit: int, size: int | None) -> None:
    message = f"the request body is larger than the limit of {limit} bytes for this path"
    details = {"max_bytes": limit} if size is None else {"max_bytes": limit, "content_length": size}
    await refuse(scope, send, 413, "too_large", "Request too large", message, details)


async def refuse(scope: dict, send, status: int, code: str, title: str, message: str, details: dict) -> None:
    """The API's JSON error under /api/, a small page elsewhere; the connection closes."""
    if scope["path"].startswith(API_PREFIX):
        payload = render_json(error_body(code, message, details))
        content_type = b"application/json"
    else:
        payload = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
                   f"</head><body><h1>{title}</h1><p>{escape(message)}.</p></body></html>").encode()
        content_type = b"text/html; charset=utf-8"
    headers = [(b"content-type", content_type), (b"content-length", str(len(payload)).encode()),
               (b"cache-control", b"no-store"), (b"connection", b"close"), *security_headers(scope)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    """Refuses a body over its path's limit before the wrapped app (Django) sees the request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        headers = scope.get("headers", [])
        if not is_chunked(headers):
            length = declared_length(headers)
            if length is not None and length > limit:
                await refuse_too_large(scope, send, limit, length)
                return
            await self.app(scope, receive, send)
            return
        try:
            body = await read_within(receive, limit)
        except BodyTooLarge:
            await refuse_too_large(scope, send, limit, None)
            return
        except TimeoutError:
            idle = settings.BODY_IDLE_TIMEOUT_SECONDS
            await refuse(scope, send, 408, "body_idle", "Request timeout",
                         f"no bytes of the request body arrived for {idle:g} seconds", {"idle_timeout_seconds": idle})
            return
        except ClientGone:
            return
        framed = [(name, value) for name, value in headers if name not in (b"transfer-encoding", b"content-length")]
        framed.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": framed}, replay(body, receive), send)


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


async def read_within(receive, limit: int) -> bytearray:
    """The whole body, read here; BodyTooLarge as soon as it passes `limit` (the rest is left
    unread), TimeoutError if it stalls for BODY_IDLE_TIMEOUT_SECONDS. One buffer, not a list
    of the server's chunks: a body trickled a byte at a time must not cost an object per byte."""
    body = bytearray()
    while True:
        async with asyncio.timeout(settings.BODY_IDLE_TIMEOUT_SECONDS):
            message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            return body


def replay(body: bytearray, receive):
    """A receive() that gives the body already read, then the server's own messages."""
    given = False

    async def replayed():
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    return replayed
