"""The API's one request body parser: JSON, bounded in size and nesting, no NUL characters
or lone surrogates (what PostgreSQL and a UTF-8 response cannot hold)."""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser, get_encoding

from jobs.storable import text_problem

MAX_DEPTH = 32


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "request body too large"


def _check(value, depth: int = 0) -> None:
    # PostgreSQL text and jsonb cannot store U+0000: refuse it here as a 400 rather than
    # let the database fail the insert with a 500.
    if depth > MAX_DEPTH:
        raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        problem = text_problem(value, "a JSON string")
        if problem:
            # A lone "\ud800" parses, but neither jsonb nor a UTF-8 response can hold it.
            raise ParseError(f"{problem}, which is not accepted")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, depth + 1)
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        encoding = get_encoding(parser_context or {})
        # Read at most one byte past the limit: a huge body is refused, not buffered.
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(f"request body is larger than {limit} bytes")
        try:
            data = json.loads(raw.decode(encoding), parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}"[:500]) from None
        _check(data)
        return data
