from __future__ import annotations

from rest_framework.pagination import PageNumberPagination
from rest_framework.settings import api_settings


class Pagination(PageNumberPagination):
    """?page=N&page_size=M (at most 100); the default size is REST_FRAMEWORK["PAGE_SIZE"]."""

    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_size(self, request) -> int | None:
        # Read per request: DRF copies PAGE_SIZE onto the class at import time.
        self.page_size = api_settings.PAGE_SIZE
        return super().get_page_size(request)
