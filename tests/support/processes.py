"""Stopping a server process the test started: SIGTERM, then SIGKILL if it does not exit."""

from __future__ import annotations

import signal
import subprocess


def terminate(proc: subprocess.Popen, grace: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
