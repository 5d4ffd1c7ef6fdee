"""Webhook test helpers: a real HTTP receiver on 127.0.0.1, and workers that may reach it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import wait_until
from tests.factories import CSV, make_job  # noqa: F401  (jobs in a given state, through the services)
from tests.support.api import api, error_of, other_api, token_client  # noqa: F401

LOOPBACK_ONLY = "127.0.0.1/32"
# Short waits between attempts, so a retry schedule plays out in about a second.
WORKER_ENV = {"WEBHOOK_ALLOW_PRIVATE_DESTINATIONS": LOOPBACK_ONLY, "WEBHOOK_RETRY_BACKOFF_BASE": "0.2",
              "WEBHOOK_RETRY_BACKOFF_MAX": "0.5", "WEBHOOK_MAX_ATTEMPTS": "4", "WEBHOOK_TIMEOUT_SECONDS": "3"}


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A ThreadingHTTPServer that records every POST and answers the statuses in `answers`
    in turn, then `then` for every later one."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: list[int] = []
        self.then = 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    status = receiver.answers.pop(0) if receiver.answers else receiver.then
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"not now")

            def log_message(self, format, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/jobs"

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        wait_until(lambda: len(self.requests) >= count, timeout, f"{count} webhook requests")
        return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def allow_loopback(settings):
    """This process (the web side: creation checks) may name 127.0.0.1, as the workers may."""
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = [LOOPBACK_ONLY]


@pytest.fixture
def webhook_worker(celery_process):
    return celery_process("worker", extra_env=WORKER_ENV)


