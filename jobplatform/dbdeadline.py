"""A deadline for database calls to a server that hangs.

libpq's deadlines (connect_timeout, statement_timeout, TCP keepalives) all need a server or
a network that answers: a paused PostgreSQL, or one whose machine stalls while its kernel
still acknowledges TCP, leaves a client waiting on its socket for ever. So one watchdog
thread per process looks at every open connection a few times a second. When a call has
waited on the server for DB_HUNG_CHECK_SECONDS, it asks the server for a new connection;
if that does not succeed within DB_CONNECT_TIMEOUT the server is hung, and the watchdog
shuts down the sockets of the waiting connections. Each waiting call then fails at once
with OperationalError (the API answers 503), and Django replaces the connection.

A server that answers the probe is only slow: its statements are bounded by its own
statement_timeout, and nothing is cut.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import weakref

import psycopg
from django.conf import settings
from django.db.backends.signals import connection_created
from psycopg import pq

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_connections: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()
_watching_pid: int | None = None


def install() -> None:
    """Watches every database connection this process opens from now on."""
    connection_created.connect(_register, dispatch_uid="jobplatform.dbdeadline")


def _register(sender, connection, **kwargs) -> None:
    global _watching_pid
    raw = connection.connection
    if not isinstance(raw, psycopg.Connection):
        return
    with _lock:
        _connections.add(raw)
        # A forked child (a Celery pool process) inherits the set but not the thread.
        if _watching_pid != os.getpid():
            _watching_pid = os.getpid()
            threading.Thread(target=_watch, name="db-deadline", daemon=True).start()


def _waiting(conn: psycopg.Connection) -> bool:
    """True while a command is in progress: sent, its answer not yet read."""
    try:
        return not conn.closed and conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE
    except psycopg.Error:
        return False


def _server_hung(conn: psycopg.Connection) -> bool:
    """The server does not hand out a new connection within the connect timeout."""
    try:
        probe = psycopg.connect(conn.info.dsn, password=conn.info.password or None,
                                connect_timeout=settings.DB_CONNECT_TIMEOUT, autocommit=True)
    except psycopg.errors.ConnectionTimeout:
        return True
    except psycopg.Error:
        return False  # it answered, if only to refuse: not hung
    probe.close()
    return False


def _cut(conn: psycopg.Connection) -> None:
    """Shuts the connection's socket down under the waiting call, which then fails; the
    owner thread still closes the connection itself, so libpq is used by one thread only."""
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return
    with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as duplicate, contextlib.suppress(OSError):
        duplicate.shutdown(socket.SHUT_RDWR)


def _watch() -> None:
    interval = max(0.05, settings.DB_HUNG_CHECK_SECONDS / 4)
    waiting_since: dict[int, float] = {}
    while True:
        time.sleep(interval)
        now = time.monotonic()
        with _lock:
            connections = list(_connections)
        overdue = []
        for conn in connections:
            if _waiting(conn):
                since = waiting_since.setdefault(id(conn), now)
                if now - since >= settings.DB_HUNG_CHECK_SECONDS:
                    overdue.append(conn)
            else:
                waiting_since.pop(id(conn), None)
        live = {id(conn) for conn in connections}
        for key in set(waiting_since) - live:
            del waiting_since[key]
        if not overdue:
            continue
        if not _server_hung(overdue[0]):
            # Only slow (its statement_timeout bounds it); ask again after another period.
            for conn in overdue:
                waiting_since[id(conn)] = time.monotonic()
            continue
        logger.warning("db.server_hung waiting_connections=%d waited_s=%.1f", len(overdue),
                       time.monotonic() - min(waiting_since[id(c)] for c in overdue))
        for conn in overdue:
            if _waiting(conn):
                _cut(conn)
            waiting_since.pop(id(conn), None)
