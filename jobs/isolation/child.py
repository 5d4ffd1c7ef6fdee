"""The processor child: a fresh interpreter that runs one job at a time for its pool process.

    python -m jobs.isolation.child <command fd> <reply fd> <parent pid>

It streams the input from object storage, runs the processor, writes the outputs and
result.json, and answers over its reply pipe; it never opens a database connection.
It holds itself to soft RLIMIT_CPU and RLIMIT_DATA limits, so a runaway processor gets
SIGXCPU or a MemoryError at its limit (soft limits only: a lowered hard limit could never
be raised for the next job).

Its parent decides its life: SIGTERM and SIGINT (a terminal's or a process group's) are
ignored, SIGUSR1 stops the running job (its open uploads are aborted on the way out), and
the kernel kills it when the thread that started it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import math
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from .protocol import ChannelClosed, receive, send

PR_SET_PDEATHSIG = 1
# Progress goes to the parent at most this often; the parent throttles its rows further.
PROGRESS_INTERVAL = 0.1
STOP_SIGNALS = {signal.SIGUSR1, signal.SIGXCPU}


class Interrupt(BaseException):
    """Raised in the processor by SIGUSR1 (the parent stops the job) or SIGXCPU (its CPU
    limit). A BaseException, so a processor's `except Exception` does not swallow it."""

    def __init__(self, limit: str | None) -> None:
        super().__init__(limit or "stopped")
        self.limit = limit


class State:
    armed = False  # a job is running: a stop signal raises Interrupt in it
    raised = False  # one Interrupt per job: SIGXCPU repeats every second past the limit


def _on_stop_signal(signum, frame) -> None:
    if State.armed and not State.raised:
        State.raised = True
        raise Interrupt("cpu" if signum == signal.SIGXCPU else None)


def reply(fd: int, message: dict) -> None:
    # A stop signal mid-write would leave half a message on the pipe.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        send(fd, message)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class Limits:
    """This process's soft RLIMIT_CPU and RLIMIT_DATA for one job.

    RLIMIT_CPU counts the process's whole life, so it is set anew before each job.
    RLIMIT_DATA is set against the footprint after start-up (the interpreter, its libraries
    and threads), once per memory limit: a child whose heap grew is replaced anyway
    (JOB_SANDBOX_RECYCLE_RSS_MB), and an idle child allocates nothing.
    """

    baseline = 0
    memory_bytes = 0

    @classmethod
    def apply(cls, cpu_seconds: float, memory_bytes: int) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = usage.ru_utime + usage.ru_stime
        _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(used + cpu_seconds), cpu_hard))
        if memory_bytes != cls.memory_bytes:
            cls.baseline = cls.baseline or _vm_data_bytes()
            _, data_hard = resource.getrlimit(resource.RLIMIT_DATA)
            soft = cls.baseline + memory_bytes
            if data_hard != resource.RLIM_INFINITY:
                soft = min(soft, data_hard)
            resource.setrlimit(resource.RLIMIT_DATA, (soft, data_hard))
            cls.memory_bytes = memory_bytes


def _vm_data_bytes() -> int:
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmData:"):
                return int(line.split()[1]) * 1024
    return 0


class ChildContext:
    """The ProcessorContext a processor sees here: progress is sent to the parent, which
    alone knows about cancel requests and leases (it stops this process's job instead)."""

    def __init__(self, job: dict, stream: BinaryIO, reply_fd: int):
        self.job_id = job["id"]
        self.input = stream
        self.input_size = job["input_size"]
        self.input_name = job["input_name"]
        self.params = job["params"]
        self.output_keys: list[str] = []
        self.reply_fd = reply_fd
        self.last_progress = time.monotonic()

    @contextmanager
    def open_output(self, name: str, content_type: str = "application/octet-stream") -> Iterator:
        import storage

        key = storage.output_key(self.job_id, name)
        with storage.open_write(storage.output_bucket(), key, content_type=content_type) as writer:
            yield writer
        self.output_keys.append(key)

    def progress(self, bytes_read: int) -> None:
        now = time.monotonic()
        if now - self.last_progress >= PROGRESS_INTERVAL:
            self.last_progress = now
            reply(self.reply_fd, {"op": "progress", "bytes": bytes_read})


def _caused_by_memory(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def run_job(message: dict, reply_fd: int) -> dict:
    """Runs one job; returns the reply (done or failed). Every exception becomes a reply."""
    import storage
    from processors import get_processor
    from processors.base import ProcessorError

    from . import results

    job = message["job"]
    try:
        processor = get_processor(job["job_type"])
        with storage.open_read(job["input_bucket"], job["input_key"]) as stream:
            ctx = ChildContext(job, stream, reply_fd)
            result = processor.run(ctx)
        results.check_storable(result)
        document = {
            "job_id": job["id"], "job_type": job["job_type"], "processor_version": processor.version,
            "input": {"bucket": job["input_bucket"], "key": job["input_key"], "size": job["input_size"],
                      "etag": job["input_etag"]},
            "params": job["params"], "result": result, "outputs": ctx.output_keys,
        }
        result_key = storage.output_key(job["id"], "result.json")
        # Written before the parent records COMPLETED; a job that does not complete has
        # its outputs deleted by the parent.
        storage.put_bytes(storage.output_bucket(), result_key,
                          json.dumps(document, indent=2, sort_keys=True).encode(), "application/json")
        return {"op": "done", "result": results.bounded(result), "outputs": ctx.output_keys,
                "result_key": result_key}
    except Interrupt as exc:
        return {"op": "failed", "kind": "limit" if exc.limit else "interrupted", "limit": exc.limit}
    except MemoryError:
        return {"op": "failed", "kind": "limit", "limit": "memory"}
    except ProcessorError as exc:
        # A processor that turns every exception into "bad input" also turns a MemoryError.
        if _caused_by_memory(exc):
            return {"op": "failed", "kind": "limit", "limit": "memory"}
        return {"op": "failed", "kind": "processor", "code": exc.code, "message": exc.message,
                "details": exc.details}
    except storage.StorageError as exc:
        return {"op": "failed", "kind": "storage", "class": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any other error is reported to the parent, which retries
        if _caused_by_memory(exc):
            return {"op": "failed", "kind": "limit", "limit": "memory"}
        return {"op": "failed", "kind": "error", "type": type(exc).__name__, "message": str(exc)[:2000],
                "traceback": traceback.format_exc()[-20000:]}


def serve(command_fd: int, reply_fd: int) -> None:
    from django.conf import settings

    while True:
        try:
            message = receive(command_fd)
        except ChannelClosed:
            return
        if message.get("op") != "run":
            return
        for name, value in message.get("settings", {}).items():
            setattr(settings, name, value)
        State.armed, State.raised = True, False
        try:
            try:
                Limits.apply(message["cpu_seconds"], message["memory_bytes"])
                outcome = run_job(message, reply_fd)
            finally:
                State.armed = False
        except Interrupt as exc:  # it landed outside the processor, on the way out
            outcome = {"op": "failed", "kind": "limit" if exc.limit else "interrupted", "limit": exc.limit}
        if outcome.get("kind") == "limit":
            gc.collect()
        reply(reply_fd, outcome)


def main(argv: list[str]) -> None:
    command_fd, reply_fd, parent = int(argv[0]), int(argv[1]), int(argv[2])
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the death signal was armed
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, _on_stop_signal)
    signal.signal(signal.SIGXCPU, _on_stop_signal)

    import django

    django.setup()
    import storage

    storage.warm_up()
    reply(reply_fd, {"op": "ready", "pid": os.getpid()})
    serve(command_fd, reply_fd)


if __name__ == "__main__":
    main(sys.argv[1:])
