"""kombu's Redis transport, publishing through one client per channel.

kombu builds a new `redis.Redis` client for every message it publishes (its
`Channel.conn_or_acquire` without a client). The connection comes from the channel's pool
either way, but building the client fills its ~170-entry response-callback table: about a
sixth of the CPU of a whole `apply_async` (bench/throughput.py publishes one per job, and
one per no-op). A client over a pool is safe to share between threads, and a forked
child's pool opens its own connections (redis-py checks the pid), so one client per
channel serves every publish. Everything else is kombu's own transport.

Selected in settings (CELERY_BROKER_TRANSPORT) for redis:// and rediss:// broker URLs.
"""

from __future__ import annotations

from contextlib import contextmanager

from kombu.transport import redis


class Channel(redis.Channel):
    _shared_client = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        if self._shared_client is None:
            self._shared_client = self._create_client()
        yield self._shared_client


class Transport(redis.Transport):
    Channel = Channel
