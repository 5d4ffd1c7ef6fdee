"""Sign-in throttling hooks for django-axes (settings: the "sign-in throttling" block).

The cool-off backs off: the lock-out lasts LOGIN_COOLOFF_SECONDS, and every further try
while locked out doubles it, up to LOGIN_COOLOFF_MAX_SECONDS. Axes keeps each count in the
cache with the cool-off as its expiry, so a client that stops trying is let in again once
its last cool-off has passed.
"""

from __future__ import annotations

import logging
import math
import threading
import unicodedata
from datetime import timedelta

import redis
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_redis.exceptions import ConnectionInterrupted

from jobs.api.errors import RETRY_AFTER_SECONDS, error_body
from jobs.api.rendering import json_response

logger = logging.getLogger(__name__)
REDIS_ERRORS = (redis.RedisError, ConnectionInterrupted)


def username(request: HttpRequest | None, credentials: dict | None) -> str | None:
    """The username a sign-in counts against, as the sign-in form passes it on (stripped, NFKC,
    like Django's UsernameField): spellings of one name that sign in as one user count as one,
    whether Axes reads it from authenticate()'s credentials or, in the cool-off, from the post."""
    field = str(settings.AXES_USERNAME_FORM_FIELD)
    if credentials:
        name = credentials.get(field)
    else:
        name = request.POST.get(field) if request is not None and request.method == "POST" else None
    if not isinstance(name, str):
        return None
    return unicodedata.normalize("NFKC", name.strip())


def _failures(request: HttpRequest) -> int:
    """The count of failures this attempt belongs to: once Axes has counted the attempt it
    says so on the request; before, it is the stored count plus this one."""
    counted = getattr(request, "axes_failures_since_start", None)
    if counted is not None:
        return counted
    return AxesProxyHandler.get_failures(request) + 1


def cool_off(request: HttpRequest | None) -> timedelta:
    base = settings.LOGIN_COOLOFF_SECONDS
    if request is None:
        return timedelta(seconds=base)
    beyond = max(0, _failures(request) - settings.AXES_FAILURE_LIMIT)
    # Capped before the power grows large: 2**beyond alone overflows a float after ~1000 tries.
    seconds = min(settings.LOGIN_COOLOFF_MAX_SECONDS, base * 2 ** min(beyond, 64))
    return timedelta(seconds=seconds)


def locked_out(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """The answer to a sign-in refused because its IP or username is locked out: 429 with
    Retry-After, a page for the sign-in forms, the API's error shape under /api/."""
    wait = max(1, math.ceil(cool_off(request).total_seconds()))
    return _refused(request, f"Too many failed sign-ins; try again in {wait} seconds.", wait, locked=True)


def _refused(request: HttpRequest, message: str, wait: int, *, locked: bool = False) -> HttpResponse:
    if request.path_info.startswith("/api/"):
        code = "locked_out" if locked else "too_many_sign_ins"
        response = json_response(error_body(code, message, {"retry_after": wait}), status=429)
    else:
        response = render(request, "registration/locked_out.html",
                          {"message": message, "locked": locked, "login_url": request.path}, status=429)
    response["Retry-After"] = str(wait)
    return response


class SignInConcurrencyMiddleware:
    """At most settings.LOGIN_MAX_CONCURRENT sign-in posts are handled at once in a process;
    one more is answered 429 at once, before its password is hashed.

    The lock-out counts a failure only once its password has been checked, so a burst from
    one address, or sign-ins spread over many addresses and usernames, would otherwise hash
    on every web thread at once and starve the API of threads and CPU.

    The lock-out's counts live in Redis: while it is away a sign-in is answered 503, not
    let through uncounted (that would open password guessing for as long as the outage).
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.slots = threading.BoundedSemaphore(settings.LOGIN_MAX_CONCURRENT)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path_info not in settings.LOGIN_PATHS:
            return self.get_response(request)
        if not self.slots.acquire(blocking=False):
            return _refused(request, "Too many sign-ins at once; try again in a second.", 1)
        try:
            return self.get_response(request)
        finally:
            self.slots.release()

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if request.path_info not in settings.LOGIN_PATHS or not isinstance(exception, REDIS_ERRORS):
            return None
        logger.warning("signin.unavailable error=%s", type(exception).__name__)
        response = render(request, "registration/locked_out.html", {
            "message": f"Signing in is unavailable for a moment; try again in {RETRY_AFTER_SECONDS} seconds.",
            "login_url": request.path}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
