"""Limits and tunables: Django settings when configured, else the defaults below.

Read at call time (not import time) so tests and ``override_settings`` take effect.
Every name here is documented in docs/processors.md.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")

MiB = 1024 * 1024


def setting(name: str, default: T) -> T:
    try:
        from django.conf import settings
    except ImportError:  # processors stay usable (and testable) without Django
        return default
    if not settings.configured:
        return default
    return getattr(settings, name, default)


def chunk_bytes() -> int:
    # 1-8 MiB: big enough that per-chunk overhead vanishes, small enough for flat memory.
    return max(MiB, min(8 * MiB, int(setting("PROCESSOR_CHUNK_BYTES", MiB))))


def csv_header_max_bytes() -> int:
    return int(setting("CSV_HEADER_MAX_BYTES", MiB))


def csv_field_size_limit() -> int:
    return int(setting("CSV_FIELD_SIZE_LIMIT", 4 * MiB))


def csv_max_line_chars() -> int:
    return int(setting("CSV_MAX_LINE_CHARS", 16 * MiB))


def csv_max_record_chars() -> int:
    return int(setting("CSV_MAX_RECORD_CHARS", 16 * MiB))


def csv_profile_max_columns() -> int:
    return int(setting("CSV_PROFILE_MAX_COLUMNS", 1000))


def json_max_bytes() -> int:
    return int(setting("JSON_CANONICALIZE_MAX_BYTES", 64 * MiB))


def json_max_line_bytes() -> int:
    return int(setting("JSON_CANONICALIZE_MAX_LINE_BYTES", 16 * MiB))


def json_max_depth() -> int:
    return int(setting("JSON_CANONICALIZE_MAX_DEPTH", 512))


def pdf_max_bytes() -> int:
    return int(setting("PDF_MAX_BYTES", 100 * MiB))


def pdf_max_pages() -> int:
    return int(setting("PDF_MAX_PAGES", 10_000))


def pdf_per_page_list_max() -> int:
    return int(setting("PDF_PER_PAGE_CHARS_MAX_ITEMS", 1000))
