"""Authentication for the streaming upload endpoints, which run outside Django's view stack.

The same rules as the API, by the same code: the API's TokenAuthentication (DRF's), then the Django
session with DRF's CSRF enforcement (Django's CsrfViewMiddleware check on a request built
from the ASGI scope). Token requests are exempt from CSRF, as in the API.
"""

from __future__ import annotations

import io
import math
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict
from django.utils.functional import SimpleLazyObject
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from jobs.api.authentication import TokenAuthentication
from jobs.services import JobError

from .throttles import UploadThrottle


def request_from_scope(scope: dict) -> ASGIRequest:
    """A Django request with the scope's headers and cookies, and no body.

    The body is the upload itself and is streamed elsewhere; marking the form data as
    already parsed keeps the CSRF check from reading it (it then takes the token from the
    X-CSRFToken header, which is what the upload page sends).
    """
    request = ASGIRequest(scope, io.BytesIO())
    request._post, request._files = QueryDict(), MultiValueDict()
    return request


def authenticate(scope: dict) -> Request:
    """The DRF request of the signed-in user, or JobError 400/401/403. Blocking (database)."""
    request = request_from_scope(scope)
    try:
        request.get_host()
    except DisallowedHost:
        raise JobError("the Host header is not allowed", code="bad_request", status=400) from None
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    request.user = SimpleLazyObject(lambda: get_user(request))
    # Token first, as in the API views: an anonymous request gets 401 with a Token challenge.
    drf_request = Request(request, authenticators=[TokenAuthentication(), SessionAuthentication()])
    # DRF's CSRF check reads request.POST through DRF's parsers; the same "already parsed, empty".
    drf_request._data = drf_request._full_data = QueryDict()
    drf_request._files = MultiValueDict()
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
