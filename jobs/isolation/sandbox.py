"""The pool process's side: a processor child per running job, reused, watched and killed.

The child is a fresh interpreter (`python -m jobs.isolation.child`), not a fork of the
pool process: obstore's Tokio runtime and the open database sockets do not survive a
fork. Starting one costs about a second, so a pool process keeps its child across jobs
(a tiny job pays two pipe messages) and starts a new one only after a child was killed,
died, hit a limit, or is left above JOB_SANDBOX_RECYCLE_RSS_MB after a job.

While a job runs the parent enforces, every TICK:
- wall clock: the processor's soft_time_limit;
- CPU time: the child's own RLIMIT_CPU raises SIGXCPU at the limit; the parent reads
  /proc/<pid>/stat and kills a child still running CPU_GRACE after it;
- memory: the parent reads VmRSS from /proc/<pid>/status; the child's RLIMIT_DATA is the
  backstop that turns a fast allocation into a MemoryError at the limit;
- cancel and lease: `should_stop`, and each progress message through `on_progress`.
A stop is SIGUSR1 (the child aborts its uploads and answers), then SIGKILL after
STOP_GRACE if it does not answer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

import storage
from processors.base import Cancelled, ProcessorError

from .protocol import ChannelClosed, receive, send

logger = logging.getLogger(__name__)

TICK = 0.1
STOP_GRACE = 0.5
CPU_GRACE = 1.5
START_TIMEOUT = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Settings the child reads that a test or deployment may change at run time; sent with
# every job so the child runs with the pool process's values.
CHILD_SETTING_PREFIXES = ("PROCESSOR_", "CSV_", "JSON_", "PDF_", "JOB_RESULT_", "S3_", "UPLOAD_PART",
                          "UPLOAD_MAX_PARTS")
STORAGE_ERRORS = {cls.__name__: cls for cls in (storage.StorageUnavailable, storage.ObjectNotFound,
                                                storage.AccessDenied, storage.StorageError)}


@dataclass(frozen=True)
class Limits:
    cpu_seconds: float
    memory_bytes: int
    wall_seconds: float


class ResourceLimitExceeded(ProcessorError):
    """Permanent: the job went over one of its limits (cpu, memory, time)."""

    DESCRIPTIONS = {
        "cpu": "it used more than {cpu:g} s of CPU time (JOB_CPU_LIMIT_SECONDS)",
        "memory": "it needed more than {memory} MiB of memory (JOB_MEMORY_LIMIT_MB)",
        "time": "it ran longer than {wall:g} s (the processor's time limit)",
    }

    def __init__(self, limit: str, limits: Limits) -> None:
        self.limit = limit
        what = self.DESCRIPTIONS[limit].format(cpu=limits.cpu_seconds, memory=limits.memory_bytes // 2**20,
                                               wall=limits.wall_seconds)
        super().__init__(f"Resource limit exceeded ({limit}): {what}; the job was stopped",
                         code="resource_limit", details={"limit": limit})


class SandboxCrashed(Exception):
    """The child died without being told to: the processor crashed its process."""


class SandboxError(RuntimeError):
    """An unexpected error in the child (a bug, most likely): handled as transient."""


def _proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


_child_setting_names: list[str] = []


def child_settings() -> dict:
    """The values of the settings the child reads (names found once; values read each time)."""
    if not _child_setting_names:
        _child_setting_names.extend(name for name in dir(settings) if name.startswith(CHILD_SETTING_PREFIXES))
    values = {}
    for name in _child_setting_names:
        value = getattr(settings, name, None)
        if value is None or isinstance(value, (bool, int, float, str)):
            values[name] = value
    return values


class Sandbox:
    """One processor child and its pipes."""

    def __init__(self) -> None:
        command_read, self.command = os.pipe()
        self.replies, reply_write = os.pipe()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE")
               or settings.SETTINGS_MODULE}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jobs.isolation.child", str(command_read), str(reply_write), str(os.getpid())],
                pass_fds=(command_read, reply_write), env=env, cwd=str(settings.BASE_DIR), stdin=subprocess.DEVNULL)
        finally:
            os.close(command_read)
            os.close(reply_write)
        self.owner = os.getpid()
        self.ready = False
        self.dead = False
        self.sent_settings: dict = {}  # what the child was told so far: each job sends only changes

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def wait_ready(self) -> None:
        if self.ready:
            return
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if select.select([self.replies], [], [], 0.5)[0]:
                try:
                    message = receive(self.replies)
                except ChannelClosed:
                    break
                if message.get("op") == "ready":
                    self.ready = True
                    return
            if self.proc.poll() is not None:
                break
        self.close()
        raise SandboxError(f"the processor process did not start (exit status {self.proc.poll()})")

    def rss(self) -> int:
        try:
            return _proc_rss_bytes(self.pid)
        except OSError:
            return 0

    def close(self) -> None:
        """Kills the child (if it runs) and releases its pipes."""
        if self.owner != os.getpid():
            return  # a forked copy: the child belongs to the process that started it
        if not self.dead:
            self.dead = True
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            for fd in (self.command, self.replies):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def run(self, *, job: dict, limits: Limits, on_progress: Callable[[int], str | None],
            should_stop: Callable[[], str | None]) -> dict:
        """Runs the job in the child; returns its done message (result, outputs, result_key).

        Raises Cancelled (stopped for a reason `should_stop` or `on_progress` gave),
        ResourceLimitExceeded, ProcessorError, a storage error, SandboxCrashed or
        SandboxError."""
        self.wait_ready()
        values = child_settings()
        changed = {name: value for name, value in values.items() if self.sent_settings.get(name, self) != value}
        self.sent_settings = values
        send(self.command, {"op": "run", "job": job, "cpu_seconds": limits.cpu_seconds,
                            "memory_bytes": limits.memory_bytes, "settings": changed})
        started = time.monotonic()
        # Read at the first check, not now: a job that ends sooner never pays for it. The
        # child's own RLIMIT_CPU counts from the start; this is only the backstop.
        cpu_start: float | None = None
        next_check = started + TICK
        reason: str | None = None
        stop_deadline = 0.0
        while True:
            now = time.monotonic()
            wait = max(0.0, min(next_check, stop_deadline or next_check) - now)
            message = None
            if select.select([self.replies], [], [], wait)[0]:
                try:
                    message = receive(self.replies)
                except ChannelClosed:
                    return self._died(reason, limits)
                if message["op"] == "progress":
                    if reason is None and (reason := on_progress(message["bytes"])):
                        stop_deadline = self._stop()
                    message = None
                else:
                    return self._finished(message, reason, limits)
            now = time.monotonic()
            if reason is not None:
                if now >= stop_deadline or self.proc.poll() is not None:
                    self.close()
                    raise self._stopped(reason, limits)
                continue
            if now < next_check:
                continue
            next_check = now + TICK
            if self.proc.poll() is not None:
                return self._died(None, limits)
            try:
                cpu = _proc_cpu_seconds(self.pid)
                rss = _proc_rss_bytes(self.pid)
            except OSError:
                return self._died(None, limits)
            if cpu_start is None:
                cpu_start = cpu - TICK
            cpu -= cpu_start
            if cpu > limits.cpu_seconds + CPU_GRACE:
                # SIGXCPU did not stop it (a long call into C code): no point asking again.
                self.close()
                raise ResourceLimitExceeded("cpu", limits)
            reason = ("time" if now - started > limits.wall_seconds else
                      "memory" if rss > limits.memory_bytes else should_stop())
            if reason is not None:
                stop_deadline = self._stop()

    def _stop(self) -> float:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGUSR1)
        return time.monotonic() + STOP_GRACE

    @staticmethod
    def _stopped(reason: str, limits: Limits) -> BaseException:
        if reason in ResourceLimitExceeded.DESCRIPTIONS:
            return ResourceLimitExceeded(reason, limits)
        return Cancelled(reason)

    def _died(self, reason: str | None, limits: Limits) -> dict:
        self.proc.poll()
        status = self.proc.returncode
        self.close()
        if reason is not None:
            raise self._stopped(reason, limits)
        raise SandboxCrashed(f"the processor's process died (exit status {status})")

    def _finished(self, message: dict, reason: str | None, limits: Limits) -> dict:
        if message["op"] == "done":
            return message
        kind = message.get("kind")
        if kind == "interrupted":
            if reason is None:  # a SIGUSR1 from outside, not this process's stop
                self.close()
                raise SandboxError("the processor's process was interrupted from outside")
            if reason in ResourceLimitExceeded.DESCRIPTIONS:
                self.close()  # its heap is whatever the runaway left: start afresh
            raise self._stopped(reason, limits)
        if kind == "limit":
            self.close()  # its heap is whatever the runaway left: start afresh
            raise ResourceLimitExceeded(message["limit"], limits)
        if kind == "processor":
            raise ProcessorError(message["message"], code=message["code"], details=message.get("details"))
        if kind == "storage":
            raise STORAGE_ERRORS.get(message["class"], storage.StorageError)(message["message"])
        logger.error("job.processor_process_error %s: %s\n%s", message.get("type"), message.get("message"),
                     message.get("traceback", ""))
        raise SandboxError(f"{message.get('type')}: {message.get('message')}")


class SandboxPool:
    """The pool process's idle children (one, unless jobs run in several threads)."""

    KEEP_IDLE = 1

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.idle: list[Sandbox] = []
        self.lock = threading.Lock()

    def acquire(self) -> Sandbox:
        with self.lock:
            while self.idle:
                sandbox = self.idle.pop()
                if sandbox.alive():
                    return sandbox
                sandbox.close()
        return Sandbox()

    def release(self, sandbox: Sandbox) -> None:
        if not sandbox.alive():
            sandbox.close()
            return
        rss = sandbox.rss()
        if rss > settings.JOB_SANDBOX_RECYCLE_RSS_MB * 2**20:
            logger.info("job.processor_process_recycled pid=%s rss=%s", sandbox.pid, rss)
            sandbox.close()
            return
        with self.lock:
            if len(self.idle) < self.KEEP_IDLE:
                self.idle.append(sandbox)
                return
        sandbox.close()

    def warm_up(self) -> None:
        """Starts a child now (without waiting for it), so the first job does not wait a second."""
        with self.lock:
            if not self.idle:
                self.idle.append(Sandbox())


_pool: SandboxPool | None = None
_pool_lock = threading.Lock()


def pool() -> SandboxPool:
    """This process's pool; a forked process starts its own (the children are its parent's)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = SandboxPool()
        return _pool
