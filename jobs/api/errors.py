"""One error shape for the whole API: {"error": {"code", "message", "details"}}.

Every way a request to /api/ can fail ends here: DRF exceptions and JobError (through
`exception_handler`), unmatched /api/ paths (`not_found`), and errors outside any DRF
view (`handler400` / `handler403` / `handler404` / `handler500`, wired in the root
urlconf; a disallowed Host or a form over Django's parser limits reaches `handler400`).
An API client never gets an HTML error page, and a database or object store that is down
or hung is a 503 `service_unavailable` with Retry-After, never a 500.
"""

from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

import storage
from jobs.errors import JobError

from .rendering import json_response

logger = logging.getLogger(__name__)

# DRF's default_code for these is terse or generic; the shape promises stable machine codes.
_CODES = {
    exceptions.ParseError: "parse_error",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.Throttled: "throttled",
    exceptions.NotFound: "not_found",
}


# How long a client is asked to wait after a 503: about one database or S3 deadline.
RETRY_AFTER_SECONDS = 5


def unavailable_part(exc: BaseException) -> str | None:
    """The dependency an exception says is away (down or past its deadline), if any."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return "database"
    if isinstance(exc, storage.StorageUnavailable):
        return "storage"
    return None


def _unavailable_message(part: str) -> str:
    return f"the {part} is unavailable; try again in a few seconds"


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(code: str, message: str, status_code: int, details: dict | None = None,
                   headers: dict | None = None) -> Response:
    return Response(error_body(code, message, details), status=status_code, headers=headers)


def error_summary(detail) -> str:
    """'field: first message; other: ...' so the message alone says what to fix."""
    if isinstance(detail, dict):
        parts = []
        for name, value in list(detail.items())[:5]:
            inner = error_summary(value)
            parts.append(inner if name == "non_field_errors" else f"{name}: {inner}")
        return "; ".join(parts)
    if isinstance(detail, list):
        return error_summary(detail[0]) if detail else ""
    return str(detail)


def suspicious_error(exc: SuspiciousOperation) -> tuple[str, str, int]:
    """(code, message, status) for a request Django refuses to parse or route."""
    if isinstance(exc, RequestDataTooBig):
        return "too_large", f"request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes", 413
    if isinstance(exc, TooManyFieldsSent):
        return ("too_many_fields", f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} parameters or form fields",
                400)
    if isinstance(exc, TooManyFilesSent):
        return "too_many_files", f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files in one form", 400
    if isinstance(exc, DisallowedHost):
        return "disallowed_host", "the Host header names a host this server does not serve", 400
    return "bad_request", "the request is malformed", 400


def exception_handler(exc, context):
    if isinstance(exc, SuspiciousOperation):
        # Raised while DRF reads request.GET or a form body: the request's fault, never a 500.
        code, message, status_code = suspicious_error(exc)
        return error_response(code, message, status_code)
    if isinstance(exc, JobError):
        set_rollback()
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 503 else None
        return error_response(exc.code, exc.message, exc.status, exc.details, headers)
    part = unavailable_part(exc)
    if part is not None:
        logger.warning("api.service_unavailable part=%s error=%s", part, str(exc).splitlines()[0][:200] if str(exc)
                       else type(exc).__name__)
        set_rollback()
        return error_response("service_unavailable", _unavailable_message(part), status.HTTP_503_SERVICE_UNAVAILABLE,
                              {"part": part, "retry_after": RETRY_AFTER_SECONDS},
                              {"Retry-After": str(RETRY_AFTER_SECONDS)})
    response = drf_exception_handler(exc, context)
    if response is None:
        # Not an API exception: a bug or an outage. Logged with its traceback, answered
        # in the API's shape, never Django's HTML page.
        view = context.get("view")
        logger.error("api.unhandled_error view=%s", type(view).__name__ if view else "?", exc_info=exc)
        set_rollback()
        return error_response("server_error", "internal server error; the error was logged",
                              status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        message = error_summary(details) or "the request is not valid"
        return error_response("invalid", f"invalid request: {message}"[:1000], status.HTTP_400_BAD_REQUEST, details)
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), getattr(exc, "default_code", "error"))
    detail = getattr(exc, "detail", str(exc))
    message = str(detail) if not isinstance(detail, (dict, list)) else error_summary(detail) or "request failed"
    headers = {k: v for k, v in response.items() if k in ("Retry-After", "WWW-Authenticate", "Allow")}
    details = {"retry_after": int(exc.wait)} if isinstance(exc, exceptions.Throttled) and exc.wait else None
    return error_response(code, message, response.status_code, details, headers)


def _json_error(code: str, message: str, status_code: int, details: dict | None = None) -> HttpResponse:
    return json_response(error_body(code, message, details), status=status_code)


@csrf_exempt  # it changes nothing; a token client's POST to a wrong path deserves a 404, not a CSRF 403
def not_found(request, *args, **kwargs) -> HttpResponse:
    """The last route under /api/v1/: any path the API does not have."""
    path = request.path_info
    if not path.endswith("/"):
        # APPEND_SLASH would redirect, which loses a POST body; say what to use instead.
        try:
            resolve(path + "/")
        except Resolver404:
            pass
        else:
            return _json_error("not_found", f"no such endpoint; did you mean {path}/ ?", 404)
    return _json_error("not_found", "no such endpoint", 404)


def _is_api(request) -> bool:
    return request.path_info.startswith("/api/")


def handler400(request, exception: Exception | None = None):
    """Django's answer to a SuspiciousOperation outside a DRF view (a disallowed Host, a form
    over DATA_UPLOAD_MAX_NUMBER_FIELDS, ...): the API's shape on /api/, a page elsewhere."""
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, SuspiciousOperation):
        code, message, status_code = suspicious_error(exception)
    else:
        code, message, status_code = "bad_request", "the request is malformed", 400
    return _json_error(code, message, status_code)


def handler403(request, exception: Exception | None = None):
    if _is_api(request):
        return _json_error("permission_denied", "you do not have permission to do this", 403)
    return defaults.permission_denied(request, exception)


def handler404(request, exception: Exception | None = None):
    if _is_api(request):
        message = "not found"
        if isinstance(exception, Http404) and exception.args and isinstance(exception.args[0], str):
            message = exception.args[0]
        return _json_error("not_found", message, 404)
    return defaults.page_not_found(request, exception)


def handler500(request):
    # Django calls this while handling the exception, so it is still the current one.
    part = unavailable_part(sys.exc_info()[1])
    if part is not None:
        if _is_api(request):
            response = _json_error("service_unavailable", _unavailable_message(part), 503,
                                   {"part": part, "retry_after": RETRY_AFTER_SECONDS})
        else:
            # No template: the site's base template reads the user, from the database that is away.
            response = HttpResponse(f"<!doctype html><title>503</title><h1>Unavailable</h1>"
                                    f"<p>{_unavailable_message(part)}.</p>", status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if _is_api(request):
        return _json_error("server_error", "internal server error; the error was logged", 500)
    return defaults.server_error(request)
