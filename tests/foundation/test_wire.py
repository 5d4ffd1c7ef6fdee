"""storage/wire.py, the fast path's HTTP/1.1 client, against a scripted loopback server:
framings and connection handling the S3 server under test does not produce by itself.
(Against the real S3 server it is exercised by test_storage_fast_path.py.)"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from storage import fast
from storage.wire import Pool, WireError, build_request


class ScriptedServer:
    """Answers each request read on a connection with the next of `answers` (raw bytes).
    After an answer, b"<close>" closes the connection. `connections` counts accepts and
    `requests` keeps each request head."""

    def __init__(self, answers: list[bytes], tls: ssl.SSLContext | None = None) -> None:
        self.answers, self.tls = list(answers), tls
        self.connections, self.requests = 0, []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            self.sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while self.answers:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                self.requests.append(head)
                answer = self.answers.pop(0)
                close = answer.endswith(b"<close>")
                conn.sendall(answer.removesuffix(b"<close>"))
                if close:
                    return

    def close_idle(self) -> None:
        """Closes every connection it holds, as a server does with idle keep-alive ones."""
        for conn in self.sockets:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        time.sleep(0.05)

    def pool(self, attempts: int = 1) -> Pool:
        return Pool("127.0.0.1", self.port, attempts=attempts, connect_timeout=2, read_timeout=2)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_chunked_body_is_decoded_and_its_connection_reused():
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n")
    server = ScriptedServer([chunked, OK])
    pool = server.pool()

    first = pool.request("GET", "/a", {"Host": "x"})
    second = pool.request("GET", "/b", {"Host": "x"})

    assert (first.status, first.data, second.data) == (200, b"hello, world", b"ok")
    assert server.connections == 1


def test_a_chunked_body_read_in_small_pieces_is_whole():
    body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (b"abc", b"defgh", b"ij")) + b"0\r\n\r\n"
    server = ScriptedServer([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body])
    response = server.pool().request("GET", "/", {"Host": "x"}, preload=False)

    pieces = []
    while piece := response.read(4):
        pieces.append(piece)

    assert b"".join(pieces) == b"abcdefghij" and all(len(p) <= 4 for p in pieces)


def test_connection_close_is_honoured_and_a_body_without_length_ends_with_the_connection():
    server = ScriptedServer([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok<close>",
                             b"HTTP/1.1 200 OK\r\n\r\nuntil the end<close>", OK])
    pool = server.pool()

    assert pool.request("GET", "/1", {"Host": "x"}).data == b"ok"
    assert pool.request("GET", "/2", {"Host": "x"}).data == b"until the end"
    assert pool.request("GET", "/3", {"Host": "x"}).data == b"ok"
    assert server.connections == 3


def test_a_keep_alive_connection_the_server_closed_is_replaced_without_using_an_attempt():
    server = ScriptedServer([OK, OK])
    pool = server.pool(attempts=1)
    assert pool.request("GET", "/1", {"Host": "x"}).data == b"ok"

    server.close_idle()

    assert pool.request("GET", "/2", {"Host": "x"}).data == b"ok"
    assert server.connections == 2 and len(server.requests) == 2


def test_a_retryable_answer_is_retried_then_returned_when_attempts_run_out():
    busy = b"HTTP/1.1 503 Slow Down\r\nContent-Length: 4\r\n\r\nbusy"
    server = ScriptedServer([busy, OK, busy, busy])

    assert server.pool(attempts=2).request("PUT", "/k", {"Host": "x"}, b"body").data == b"ok"
    last = server.pool(attempts=2).request("PUT", "/k", {"Host": "x"}, b"body")

    assert (last.status, last.data) == (503, b"busy")
    assert len(server.requests) == 4
    assert all(b"Content-Length: 4" in head for head in server.requests)


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH\r\n\r\n<close>",                                  # not HTTP
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n<close>",                 # a malformed header
    b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n<close>",            # a bad length
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort<close>",       # a body cut short
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n<close>",  # a bad chunk size
    b"<close>",                                                         # no answer at all
])
def test_a_broken_answer_is_a_wire_error(answer):
    server = ScriptedServer([answer])
    with pytest.raises(WireError):
        server.pool().request("GET", "/", {"Host": "x"})


def test_too_many_headers_is_a_wire_error():
    server = ScriptedServer([b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 500 + b"\r\n<close>"])
    with pytest.raises(WireError, match="more than"):
        server.pool().request("GET", "/", {"Host": "x"})


def test_nothing_listening_is_a_wire_error_after_the_attempts():
    from jobplatform.devstack import free_port

    pool = Pool("127.0.0.1", free_port(), attempts=2, connect_timeout=1, read_timeout=1,
                backoff_factor=0.01, backoff_jitter=0)
    with pytest.raises(WireError, match="cannot connect"):
        pool.request("HEAD", "/", {"Host": "x"})


@pytest.mark.parametrize("name, value", [("X-Amz-Meta-A", "one\r\nX-Injected: yes"), ("X-Amz-Meta-B", "nul\0"),
                                         ("Bad\r\nName", "v"), ("Colon:Name", "v"), ("", "v")])
def test_a_header_that_would_break_the_request_is_refused(name, value):
    with pytest.raises(ValueError, match="invalid HTTP header"):
        build_request("PUT", "/k", {name: value}, b"")


def test_metadata_with_control_characters_does_not_take_the_fast_path():
    assert fast.usable("k", {"name": "plain value"})
    assert not fast.usable("k", {"name": "two\nlines"})
    assert not fast.usable("k", {"name": "tab\there"})
    assert not fast.usable("k", {"name": "ünïcødé"})


def test_backoff_is_urllib3s_and_retry_after_is_respected():
    pool = Pool("127.0.0.1", 1, attempts=5, connect_timeout=1, read_timeout=1)
    server = ScriptedServer([b"HTTP/1.1 503 x\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n"])
    answer = server.pool().request("GET", "/", {"Host": "x"})

    assert pool.delay(1) == 0.0
    assert 1.0 <= pool.delay(2) <= 1.5 and 2.0 <= pool.delay(3) <= 2.5
    assert pool.delay(12) == 20.0
    assert pool.delay(1, answer) == 3.0


@pytest.fixture
def tls_server_and_ca(tmp_path):
    """A server context with a self-signed certificate for 127.0.0.1, made by the openssl
    command (not a Python package: cryptography, installed, would be imported by
    django-storages into every worker and cost it ~9 MiB of RSS), and that certificate as
    the client's CA bundle."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (Debian: apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(str(cert), str(key))
    return server_context, str(cert)


def test_tls_is_verified_against_the_ca_bundle_and_its_connection_reused(tls_server_and_ca):
    server_context, bundle = tls_server_and_ca
    server = ScriptedServer([OK, OK], tls=server_context)
    pool = Pool("127.0.0.1", server.port, attempts=1, connect_timeout=2, read_timeout=2,
                tls=ssl.create_default_context(cafile=bundle))

    assert pool.request("GET", "/1", {"Host": "x"}).data == b"ok"
    assert pool.request("GET", "/2", {"Host": "x"}).data == b"ok"
    assert server.connections == 1

    untrusting = Pool("127.0.0.1", server.port, attempts=1, connect_timeout=2, read_timeout=2,
                      tls=ssl.create_default_context())  # the system's CAs do not know this one
    with pytest.raises(WireError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        untrusting.request("GET", "/3", {"Host": "x"})


def test_an_https_endpoint_takes_the_fast_path_with_aws_ca_bundle(tls_server_and_ca, settings, monkeypatch):
    server_context, bundle = tls_server_and_ca
    server = ScriptedServer([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\n"], tls=server_context)
    monkeypatch.setenv("AWS_CA_BUNDLE", bundle)
    settings.S3_ENDPOINT_URL = f"https://127.0.0.1:{server.port}"

    answer = fast.get().request("HEAD", "bucket", "some/key.csv")

    assert (answer.status, answer.headers["content-length"], answer.headers.get("ETag")) == (200, "5", '"e"')
    assert server.requests[0].startswith(b"HEAD /bucket/some/key.csv HTTP/1.1")
    assert b"Authorization: AWS4-HMAC-SHA256" in server.requests[0]


def test_a_reused_connection_closed_without_an_answer_is_retried_without_using_an_attempt():
    # The server takes the second request on the kept connection, then closes it unanswered
    # (as a server does whose idle timeout fired just as the request arrived).
    server = ScriptedServer([OK, b"<close>", OK])
    pool = server.pool(attempts=1)
    assert pool.request("GET", "/1", {"Host": "x"}).data == b"ok"

    assert pool.request("GET", "/2", {"Host": "x"}).data == b"ok"
    assert server.connections == 2 and len(server.requests) == 3
