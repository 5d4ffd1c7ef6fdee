"""A RabbitMQ virtual host of the test session's own, on the machine's RabbitMQ.

RABBITMQ_URL names the server (default amqp://guest:guest@127.0.0.1:5672/). The vhost is
made through the management HTTP API when it answers (RABBITMQ_MANAGEMENT_URL, default
http://127.0.0.1:15672), else with `rabbitmqctl`, and deleted at the end of the session, so
the quorum queues a run declares and the messages it leaves behind are no one else's.
Without a reachable server, or with no way to make a vhost, the tests using it are skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest

SERVER_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")

# Broker URLs the session's worker and web processes were given, besides the session's own
# broker: tests/conftest.py purge_queues empties these too.
SESSION_BROKERS: set[str] = set()


class Unavailable(Exception):
    """No RabbitMQ to reach, or no way to make a vhost on it; the message says which."""


def _reachable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) == 0


class Vhost:
    def __init__(self) -> None:
        parts = urlsplit(SERVER_URL)
        self.server, self.name = parts, f"jobplatform-test-{uuid.uuid4().hex[:12]}"
        self.user, self.password = parts.username or "guest", parts.password or "guest"
        self.url = urlunsplit((parts.scheme, parts.netloc, "/" + quote(self.name, safe=""), "", ""))
        self.how = ""

    def create(self) -> None:
        if not _reachable(self.server.hostname or "127.0.0.1", self.server.port or 5672):
            raise Unavailable(f"no RabbitMQ at {self.server.hostname}:{self.server.port or 5672} (set RABBITMQ_URL)")
        try:
            api = httpx.Client(base_url=MANAGEMENT_URL, auth=(self.user, self.password), timeout=10)
            api.put(f"/api/vhosts/{quote(self.name, safe='')}").raise_for_status()
            api.put(f"/api/permissions/{quote(self.name, safe='')}/{quote(self.user, safe='')}",
                    json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
            self.how = "api"
            return
        except httpx.HTTPError:
            pass
        ctl = shutil.which("rabbitmqctl")
        if ctl is None:
            raise Unavailable("RabbitMQ answers but a vhost cannot be made: no management API at "
                              f"{MANAGEMENT_URL} and no rabbitmqctl")
        for args in (["add_vhost", self.name], ["set_permissions", "-p", self.name, self.user, ".*", ".*", ".*"]):
            done = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise Unavailable(f"rabbitmqctl {args[0]} failed: {done.stderr.strip()[-300:]}")
        self.how = "rabbitmqctl"

    def delete(self) -> None:
        if self.how == "api":
            httpx.delete(f"{MANAGEMENT_URL}/api/vhosts/{quote(self.name, safe='')}",
                         auth=(self.user, self.password), timeout=10)
        elif self.how == "rabbitmqctl":
            subprocess.run([shutil.which("rabbitmqctl"), "delete_vhost", self.name], capture_output=True,
                           timeout=60)


@pytest.fixture(scope="session")
def rabbitmq_url():
    """amqp:// URL of a vhost of this session's own; skips the test without RabbitMQ."""
    vhost = Vhost()
    try:
        vhost.create()
    except Unavailable as exc:
        pytest.skip(str(exc))
    SESSION_BROKERS.add(vhost.url)
    try:
        yield vhost.url
    finally:
        SESSION_BROKERS.discard(vhost.url)
        vhost.delete()
