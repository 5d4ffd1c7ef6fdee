"""Django's Redis cache, with one connection pool and client per process.

Django keeps a cache object per thread, and the stock RedisCacheClient keeps its pool on
that object and builds a new redis.Redis for every operation. Under ASGI every request
runs in a fresh thread, so each throttled API call opened new TCP connections to Redis
and rebuilt the client twice. redis-py pools and clients are thread-safe, and a pool
notices a fork and starts over, so sharing them per process is safe.
"""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_clients: dict[tuple, object] = {}
_lock = threading.Lock()


class SharedRedisCacheClient(RedisCacheClient):
    def __init__(self, servers, **options):
        super().__init__(servers, **options)
        # Which shared client serves each server: its URL and this cache's pool options.
        options_key = tuple(sorted(self._pool_options.items(), key=str))
        self._shared_keys = [(server, options_key) for server in self._servers]

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        shared_key = self._shared_keys[index]
        client = _clients.get(shared_key)
        if client is None:
            with _lock:
                client = _clients.get(shared_key)
                if client is None:
                    pool = self._pool_class.from_url(self._servers[index], **self._pool_options)
                    client = _clients[shared_key] = self._client(connection_pool=pool)
        return client


class SharedRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SharedRedisCacheClient


def redis_client():
    """The default cache's shared redis.Redis, for atomic operations the cache API lacks
    (the API throttles' script); None when the default cache is not this Redis cache."""
    from django.core.cache import caches

    default = caches["default"]
    if not isinstance(default, SharedRedisCache):
        return None
    return default._cache.get_client(write=True)
