"""A streamed upload that the web process's shutdown interrupts leaves no open multipart upload."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from jobs.models import Job
from tests.conftest import wait_until
from tests.jobs.uploads.conftest import MIB, open_uploads, stored_keys
from tests.support.deadlines import within

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.slow
def test_sigterm_mid_upload_aborts_the_multipart_upload_before_the_server_exits(start_web, user, token):
    # Uvicorn reads its options from UVICORN_* too: a short grace, so the stalled upload is
    # cancelled by the server, as in production, rather than waited for.
    server = start_web(UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN="1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"PUT /api/v1/uploads/interrupted.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: {token['Authorization']}\r\nContent-Length: {20 * MIB}\r\n\r\n".encode())
        block = os.urandom(MIB)
        for _ in range(12):
            sock.sendall(block)
        # A part went to storage, so a multipart upload is under way; the client then stalls.
        wait_until(lambda: open_uploads(user), what="a multipart upload under way")
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(within(10))
        # Checked once the process has gone, not waited for: the abort is the server's job.
        assert open_uploads(user) == []
    assert stored_keys(user) == []
    assert not Job.objects.filter(owner=user).exists()
    assert b"upload.aborted" in server.log.read_bytes()
