"""Per-user rate limits; the rates are settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"].

A fixed-window counter per user and scope (django-ratelimit, one atomic cache increment)
does constant work per request; DRF's UserRateThrottle keeps and rewrites the list of
every request time in the window, thousands of entries at the rates the benchmarks run.

The counter is keyed by scope and user only, not by view: an API call and a form post of
one scope count against one allowance (`refusal` is the pages' way in).
"""

from __future__ import annotations

import logging
import math

import redis
from django_ratelimit.core import get_usage
from django_redis.exceptions import ConnectionInterrupted
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)


def _user_key(group: str, request) -> str:
    return str(request.user.pk)


class ScopedThrottle(BaseThrottle):
    """One allowance per user for `scope`; a scope without a rate is not limited."""

    scope = ""

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def allow_request(self, request, view) -> bool:
        # Read per request, not copied at import, so that a settings change takes effect.
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        try:
            usage = get_usage(request, group=self.scope, key=_user_key, rate=rate, increment=True)
        except (redis.RedisError, ConnectionInterrupted):
            # Redis is down or restarting: let the request through rather than fail it. A
            # job created now is committed, and the sweeper publishes it once Redis is back.
            logger.warning("throttle.unavailable scope=%s", self.scope, exc_info=True)
            return True
        if usage is None or not usage["should_limit"]:
            return True
        # The window's last whole second still counts in it: time_left is 0..period-1 and the
        # next window opens up to a second after it, so this is the wait that is always enough.
        self.retry_after = usage["time_left"] + 1
        return False

    def wait(self) -> float | None:
        return self.retry_after


class JobCreateThrottle(ScopedThrottle):
    """Job creates: the API's POST /jobs/ and the upload form."""

    scope = "job_create"


class JobActionThrottle(ScopedThrottle):
    """Cancel, retry and dead-letter replay, from the API and the pages alike."""

    scope = "job_action"


class UploadPartThrottle(ScopedThrottle):
    """A direct upload's part signing, completion and abort: many per upload, cheap each."""

    scope = "upload_part"


def refusal(request, *throttle_classes: type[ScopedThrottle]) -> int | None:
    """Counts the request against each scope in turn; the seconds to wait if one refuses,
    else None. The first refusal stops the count, as in DRF's own check."""
    for throttle_class in throttle_classes:
        throttle = throttle_class()
        if not throttle.allow_request(request, None):
            return max(1, math.ceil(throttle.wait() or 1))
    return None
