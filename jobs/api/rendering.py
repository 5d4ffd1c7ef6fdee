"""The API's JSON bytes, the same wherever a response is made.

DRF's views render through JSONRenderer; the responses made outside them (the streamed
upload consumer, the admission middleware, the API's error handlers, the sign-in lock-out)
use these two functions, so every body has the same spacing (none), the same encoding of
non-ASCII text (UTF-8, not escaped) and the same encoder for ids and times.
"""

from __future__ import annotations

from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer

_renderer = JSONRenderer()


def render_json(data) -> bytes:
    return _renderer.render(data)


def json_response(data, *, status: int = 200) -> HttpResponse:
    return HttpResponse(render_json(data), status=status, content_type=_renderer.media_type)
