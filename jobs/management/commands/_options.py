"""Parsing shared by the job commands."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

_AGO = re.compile(r"^(\d{1,6})\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str) -> datetime:
    """An ISO date or date-time, or an age like 30m, 2h, 3d, 1w (that long ago)."""
    text = value.strip()
    match = _AGO.match(text.lower())
    if match:
        return timezone.now() - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        moment = parse_datetime(text)
        if moment is None and (day := parse_date(text)) is not None:
            moment = datetime(day.year, day.month, day.day)
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"--since {value!r}: give an ISO date (2024-05-01), a date-time, or an age like 2h or 3d")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, timezone.get_current_timezone())
