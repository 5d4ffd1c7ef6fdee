"""Pausing a real server with SIGSTOP: it keeps its sockets (the kernel still accepts
connections and acknowledges data) but answers nothing, as a hung server does."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests import stack_plugin


def server(name: str):
    """The test session's own server ("postgres", "redis", "s3"), or a skip if the environment names one."""
    found = getattr(stack_plugin.STACK, name, None)
    if found is None or found.proc is None:
        pytest.skip(f"the environment names an external {name} server; this test pauses its own")
    return found


@contextmanager
def paused(name: str) -> Iterator[None]:
    """The server and every process it started stopped, resumed on exit. PostgreSQL's backends
    lead process groups of their own, so they are found as children, not by process group."""
    import psutil

    leader = psutil.Process(server(name).proc.pid)
    leader.send_signal(signal.SIGSTOP)  # first, so that it forks nothing new meanwhile
    processes = [leader, *leader.children(recursive=True)]
    try:
        for process in processes[1:]:
            process.send_signal(signal.SIGSTOP)
        yield
    finally:
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)


@contextmanager
def stopped(name: str) -> Iterator[None]:
    """The server stopped, then started again on the same port and data."""
    found = server(name)
    found.stop()
    try:
        yield
    finally:
        found.start()
