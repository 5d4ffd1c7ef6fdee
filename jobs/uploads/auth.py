"""Authentication for the streaming upload endpoints, which run outside Django's view stack.

The same rules as the API, by the same code: the API's TokenAuthentication (DRF's), then the
Django session with DRF's CSRF enforcement (Django's CsrfViewMiddleware check). Token
requests are exempt from CSRF, as in the API.
"""

from __future__ import annotations

import io
import math

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from jobs.api.authentication import TokenAuthentication
from jobs.api.errors import suspicious_error
from jobs.errors import JobError

from .throttles import UploadThrottle

# The body is the upload itself, streamed elsewhere. Without these headers the request has
# no form data to parse, so the CSRF check (which looks at POST) reads nothing and takes
# the token from the X-CSRFToken header, which is what the upload page sends.
_BODY_HEADERS = (b"content-type", b"content-length")


def _no_response(request):
    return None


def request_from_scope(scope: dict) -> ASGIRequest:
    """A Django request with the scope's headers, cookies, session and user, and no body."""
    headers = [(name, value) for name, value in scope.get("headers", []) if name.lower() not in _BODY_HEADERS]
    request = ASGIRequest({**scope, "headers": headers}, io.BytesIO())
    SessionMiddleware(_no_response).process_request(request)
    AuthenticationMiddleware(_no_response).process_request(request)
    return request


def authenticate(scope: dict) -> Request:
    """The DRF request of the signed-in user, or JobError 400/401/403. Blocking (database)."""
    request = request_from_scope(scope)
    try:
        request.get_host()
    except DisallowedHost as exc:
        code, message, status = suspicious_error(exc)  # the same answer as the API views give
        raise JobError(message, code=code, status=status) from None
    # Token first, as in the API views: an anonymous request gets 401 with a Token challenge.
    drf_request = Request(request, authenticators=[TokenAuthentication(), SessionAuthentication()])
    try:
        user = drf_request.user
    except exceptions.AuthenticationFailed as exc:
        raise JobError(str(exc.detail), code="authentication_failed", status=401) from None
    except exceptions.PermissionDenied as exc:  # the session's CSRF check
        raise JobError(str(exc.detail), code="permission_denied", status=403) from None
    if not (user and user.is_authenticated):
        raise JobError("Authentication credentials were not provided.", code="not_authenticated", status=401)
    return drf_request


def throttle(drf_request: Request) -> None:
    limiter = UploadThrottle()
    if not limiter.allow_request(drf_request, None):
        wait = max(1, math.ceil(limiter.wait() or 1))
        raise JobError(f"Request was throttled. Expected available in {wait} seconds.", code="throttled",
                       status=429, details={"retry_after": wait})
