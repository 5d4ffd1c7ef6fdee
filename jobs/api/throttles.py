"""Per-user rate limits; the rates are settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"].

DRF's UserRateThrottle keeps, per user, the list of every request time in the window and
reads, trims and writes it back whole on each request: at a rate of thousands per minute
that list is thousands of floats pickled twice per call (7% of a job create's CPU in
bench/throughput.py). Here the same "N per period" is a generic cell rate algorithm
(GCRA) kept in one Redis value, the theoretical arrival time, read and advanced by one
atomic script: one round trip and constant work per request. A burst of N is allowed at
once, then one request per period/N; Retry-After says when the next one is.
"""

from __future__ import annotations

import logging

import redis
from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle

from jobplatform.cache import redis_client

# KEYS[1]: the user's key. ARGV: now, emission interval (period / N), burst tolerance
# (period - interval), all in seconds. Returns "0" when allowed, else the seconds to wait.
_GCRA = """
local now, interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
if tat - tolerance > now then return tostring(tat - tolerance - now) end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return '0'
"""
_scripts: dict[int, object] = {}
logger = logging.getLogger(__name__)


class JobCreateThrottle(UserRateThrottle):
    scope = "job_create"
    _wait: float | None = None

    def get_rate(self) -> str | None:
        # DRF copies the rates onto the class at import; read them per request instead so
        # a settings change (or a test's override) takes effect.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view) -> bool:
        client = redis_client()
        if self.rate is None or client is None:
            return super().allow_request(request, view)  # no Redis cache: DRF's own list
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        script = _scripts.get(id(client))
        if script is None:
            script = _scripts[id(client)] = client.register_script(_GCRA)
        interval = self.duration / self.num_requests
        try:
            wait = float(script(keys=[cache.make_key(self.key)], args=[repr(self.timer()), repr(interval),
                                                                        repr(self.duration - interval)]))
        except redis.RedisError:
            # Redis is down or restarting: let the request through rather than fail it. A
            # job created now is committed, and the sweeper publishes it once Redis is back.
            logger.warning("throttle.unavailable scope=%s", self.scope, exc_info=True)
            return True
        self._wait = wait if wait > 0 else None
        return self._wait is None

    def wait(self) -> float | None:
        if self._wait is not None:
            return self._wait
        return super().wait() if getattr(self, "history", None) else None
