"""Per-user rate limits; the rates are settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"].

A fixed-window counter per user and scope (django-ratelimit, one atomic cache increment)
does constant work per request; DRF's UserRateThrottle keeps and rewrites the list of
every request time in the window, thousands of entries at the rates the benchmarks run.
"""

from __future__ import annotations

import logging

import redis
from django_ratelimit.core import get_usage
from django_redis.exceptions import ConnectionInterrupted
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)


def _user_key(group: str, request) -> str:
    return str(request.user.pk)


class JobCreateThrottle(BaseThrottle):
    scope = "job_create"

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
        self.retry_after = max(1, usage["time_left"])
        return False

    def wait(self) -> float | None:
        return self.retry_after
