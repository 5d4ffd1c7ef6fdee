"""Cursor pagination for every API list: each page is one index range read, however deep.

A page number needs OFFSET (every row before the page is read) and a count of the whole
result (every row is read); a cursor needs neither. The envelope is {next, previous,
results}; next and previous are URLs carrying an opaque ?cursor=.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.settings import api_settings

from jobs.errors import JobError


class Cursor(CursorPagination):
    """?cursor=...&page_size=M (at most 100); the default size is REST_FRAMEWORK["PAGE_SIZE"].

    Newest first. The cursor holds the last row's `created` time (plus an offset among rows
    created in the same microsecond); the id breaks ties so the order is total."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_size(self, request) -> int | None:
        # Read per request: DRF copies PAGE_SIZE onto the class at import time.
        self.page_size = api_settings.PAGE_SIZE
        return super().get_page_size(request)

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except (NotFound, ValidationError):  # not decodable, or a position that is not a time
            # Not a missing resource: the client sent a cursor this server never made.
            raise JobError("invalid cursor: use the next or previous URL of a page as it is",
                           code="invalid_cursor", details={"cursor": ["invalid"]}) from None


class DeadLetterCursor(Cursor):
    ordering = ("-died_at", "-id")


def cursor_page(name: str, child: type[serializers.Serializer]) -> serializers.Serializer:
    """The page envelope of Cursor, for the schema."""
    return inline_serializer(name=name, fields={
        "next": serializers.URLField(allow_null=True, help_text="the next (older) page; null on the last"),
        "previous": serializers.URLField(allow_null=True, help_text="the previous (newer) page; null on the first"),
        "results": child(many=True),
    })
