"""Streamed uploads cost the web process memory only for the bytes they have sent, a client
that stops sending is cut off, and the uploads under way at once are capped per user and per
process: against a real Uvicorn web process, RSS read from /proc."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_until
from tests.jobs.uploads.conftest import MIB, error_of, open_uploads, stored_keys, token_headers

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024 * MIB
# Longer than the 1 GiB upload takes (about 17 s here), so the stalled uploads stay open all through it.
IDLE_SECONDS = 45
STALLED = 20


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class RssSampler(threading.Thread):
    """The largest VmRSS of a process while it runs (sampled every 20 ms)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.stopping = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))

    def stop(self) -> int:
        self.stopping.set()
        self.join()
        return self.peak_kib


class StalledUpload:
    """An upload that sends its headers and a few bytes, then nothing.

    `Expect: 100-continue` makes the server say when the upload has been admitted and its
    body is being read: Uvicorn sends 100 Continue at the app's first receive()."""

    def __init__(self, port: int, token: dict, name: str, *, form: bool, first_bytes: bytes = b"abc"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        if form:
            first_bytes = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + name.encode()
                           + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + first_bytes)
            head = "POST /api/v1/uploads/ HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        else:
            head = f"PUT /api/v1/uploads/{name} HTTP/1.1\r\n"
        self.sock.sendall(f"{head}Host: 127.0.0.1\r\nAuthorization: {token['Authorization']}\r\n"
                          f"Content-Length: {100 * MIB}\r\nExpect: 100-continue\r\n\r\n".encode())
        self.received = b""
        while b"\r\n\r\n" not in self.received:
            self.received += self.sock.recv(65536)
        assert self.received.startswith(b"HTTP/1.1 100"), self.received[:300]
        self.received = self.received.split(b"\r\n\r\n", 1)[1]
        self.sock.sendall(first_bytes)

    def reply(self) -> bytes:
        """All the server sends until it closes the connection."""
        while piece := self.sock.recv(65536):
            self.received += piece
        self.sock.close()
        return self.received


def body(total: int, block: bytes):
    for _ in range(total // len(block)):
        yield block


def assert_idle_answer(reply: bytes) -> None:
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:300]
    assert b"connection: close" in head.lower()
    assert json.loads(payload)["error"]["code"] == "upload_idle"


@pytest.mark.slow
def test_20_stalled_uploads_and_a_1_gib_upload_stay_within_64_mib_of_idle(start_web_server, user):
    server = start_web_server(UPLOAD_IDLE_TIMEOUT_SECONDS=str(IDLE_SECONDS), UPLOAD_MAX_CONCURRENT_PER_USER="32",
                              THROTTLE_UPLOAD="1000/min")
    token = token_headers(user)
    with server.client() as http:  # warm: the upload path and the S3 client are loaded once
        assert http.put("/api/v1/uploads/warm.bin", content=b"warm", headers=token).status_code == 201
    idle_kib = rss_kib(server.proc.pid)
    sampler = RssSampler(server.proc.pid)
    sampler.start()
    try:
        stalled = [StalledUpload(server.port, token, f"stalled-{i}.bin", form=i % 2 == 1) for i in range(STALLED)]
        began = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=300) as http:
            big = http.put("/api/v1/uploads/big.bin", content=body(GIB, os.urandom(MIB)),
                           headers={**token, "Content-Length": str(GIB)})
        big_seconds = time.monotonic() - began
        replies = [upload.reply() for upload in stalled]
    finally:
        peak_kib = sampler.stop()

    assert big.status_code == 201, big.text
    assert big.json()["size"] == GIB
    assert big_seconds < IDLE_SECONDS, f"the 1 GiB upload took {big_seconds:.1f}s, past the stalled ones' timeout"
    grown_mib = (peak_kib - idle_kib) / 1024
    assert grown_mib <= 64, f"the web process grew by {grown_mib:.1f} MiB over idle ({idle_kib // 1024} MiB)"
    for reply in replies:
        assert_idle_answer(reply)
    assert open_uploads(user) == []
    assert sorted(key.rsplit("/", 1)[1] for key in stored_keys(user)) == ["big.bin", "warm.bin"]


def test_an_upload_stalled_after_a_part_was_sent_is_aborted_after_the_idle_timeout(start_web_server, user):
    server = start_web_server(UPLOAD_IDLE_TIMEOUT_SECONDS="2")
    token = token_headers(user)
    upload = StalledUpload(server.port, token, "stalled.bin", form=False, first_bytes=os.urandom(9 * MIB))
    # More than one part arrived, so a multipart upload is open until the timeout aborts it.
    wait_until(lambda: open_uploads(user), timeout=10, what="a multipart upload under way")

    assert_idle_answer(upload.reply())
    assert open_uploads(user) == []
    assert stored_keys(user) == []


def test_uploads_past_the_per_user_and_per_process_caps_are_429_before_any_body_is_read(start_web_server, make_user):
    server = start_web_server(UPLOAD_MAX_CONCURRENT_PER_USER="2", UPLOAD_MAX_CONCURRENT="3",
                              UPLOAD_IDLE_TIMEOUT_SECONDS="120")
    alice, bob, carol = (make_user(name) for name in ("alice", "bob", "carol"))
    held = [StalledUpload(server.port, token_headers(alice), f"a{i}.bin", form=False) for i in range(2)]
    with server.client() as http:
        per_user = http.put("/api/v1/uploads/a2.bin", content=b"abc", headers=token_headers(alice))
        held.append(StalledUpload(server.port, token_headers(bob), "b0.bin", form=True))
        per_process = http.put("/api/v1/uploads/c0.bin", content=b"abc", headers=token_headers(carol))

        assert per_user.status_code == 429 and per_user.headers["Retry-After"].isdigit()
        assert error_of(per_user)["code"] == "too_many_uploads"
        assert error_of(per_user)["details"]["scope"] == "user"
        assert per_process.status_code == 429 and error_of(per_process)["details"]["scope"] == "server"
        assert stored_keys(alice) == [] and stored_keys(carol) == []

        # A client that goes away gives its slot back once its upload is aborted.
        held.pop(0).sock.close()
        wait_until(lambda: http.put("/api/v1/uploads/a2.bin", content=b"abc",
                                    headers=token_headers(alice)).status_code == 201,
                   timeout=10, what="alice's slot given back")
    for upload in held:
        upload.sock.close()
    assert [key.rsplit("/", 1)[1] for key in stored_keys(alice)] == ["a2.bin"]
