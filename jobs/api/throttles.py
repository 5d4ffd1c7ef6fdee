"""Per-user rate limits; the rates are settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle


class JobCreateThrottle(UserRateThrottle):
    scope = "job_create"

    def get_rate(self) -> str | None:
        # DRF copies the rates onto the class at import; read them per request instead so
        # a settings change (or a test's override) takes effect.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
