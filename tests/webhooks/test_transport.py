"""One attempt's HTTP exchange against real sockets on 127.0.0.1: bounded in time and bytes."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from webhooks.transport import post

from .conftest import LOOPBACK_ONLY


@pytest.fixture
def raw_server():
    """serve(reply) runs a one-connection TCP server that reads the request, then calls
    reply(connection); returns the URL."""
    servers: list[socket.socket] = []

    def serve(reply) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        servers.append(listener)

        def run() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                with contextlib.suppress(OSError):  # the client gave up, as it should
                    reply(connection)

        threading.Thread(target=run, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/hook"

    yield serve
    for listener in servers:
        listener.close()


@pytest.fixture(autouse=True)
def _loopback(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = [LOOPBACK_ONLY]


def _send(url: str, timeout: float = 0.5):
    return post(url, headers={"webhook-id": "msg_test"}, body=b"{}", timeout=timeout, snippet_bytes=16)


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_attempts_deadline(raw_server):
    def drip(connection):
        connection.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):  # a header byte every 0.2 s: each read is in time, the whole is not
            connection.sendall(b"X")
            time.sleep(0.2)

    answer = _send(raw_server(drip))

    assert answer.status_code is None and not answer.succeeded
    assert answer.error.startswith("timeout:")


def test_only_a_snippet_of_a_long_answer_is_kept(raw_server):
    def long_answer(connection):
        body = b"x" * 1_000_000
        connection.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    answer = _send(raw_server(long_answer))

    assert (answer.status_code, answer.snippet) == (500, "x" * 16)


def test_a_redirect_is_not_followed(raw_server):
    def redirect(connection):
        connection.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n")

    answer = _send(raw_server(redirect))

    assert (answer.status_code, answer.succeeded) == (302, False)


def test_a_refused_address_is_not_connected_to(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = []

    answer = _send("http://127.0.0.1:9/hook")

    assert answer.refused and answer.address == ""
    assert answer.error.startswith("destination_refused:")


def test_a_closed_port_is_a_connect_error_with_the_address_tried(raw_server):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()

    answer = _send(f"http://127.0.0.1:{port}/hook")

    assert answer.status_code is None and not answer.refused
    assert answer.error.startswith("ConnectError")


def test_a_host_name_goes_in_the_host_header_while_the_checked_address_is_connected(settings, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = [LOOPBACK_ONLY, "::1/128"]
    port = receiver.server.server_address[1]

    answer = _send(f"http://localhost:{port}/hook")

    assert (answer.status_code, answer.address) == (200, f"127.0.0.1:{port}")
    assert receiver.requests[0].headers["Host"] == f"localhost:{port}"
