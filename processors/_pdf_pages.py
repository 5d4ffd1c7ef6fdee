"""PDFium page texts, read in a forked process and sent back over a pipe page by page.

PDFium aborts its process when an allocation fails, and a job's memory limit is an
allocation limit (RLIMIT_DATA): a 60 KB page of two million glyphs needs about 1 GiB. In
the job's own process that abort would look like a crashed worker; in a forked process
the job sees how it ended and fails cleanly. The fork inherits the memory limit and gets
what is left of the CPU limit; it dies with the job's process (PR_SET_PDEATHSIG) and is
killed when the job stops reading (cancel, error, or any other exit).

Frames on the pipe: a 9-byte header (kind, two unsigned ints) and a payload.
  b"N" pages, 0, no payload      the page count, first
  b"P" characters, size, text    one page's text, UTF-8
  b"E" 0, size, JSON             a ProcessorError: message, code, details
  b"M" 0, 0                      a MemoryError in Python code
  b"D" 0, 0                      the end: every page was sent
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import struct
import traceback
from collections.abc import Callable, Iterator

from processors.base import ProcessorError

HEADER = struct.Struct("!cII")
PR_SET_PDEATHSIG = 1
# A process that died of one of these at over this share of its memory limit ran out of
# memory (PDFium's allocator aborts); below it, PDFium itself failed on the file.
CRASH_SIGNALS = {signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGTRAP, signal.SIGILL}
MEMORY_SHARE = 0.5


def page_texts(open_document: Callable[[], object], read_page: Callable[[object, int], str],
               max_pages: int) -> Iterator[tuple[int, str]]:
    """Yields (page count, "") first, then (characters, text) for each page.

    `open_document()` and `read_page(document, number)` run in the forked process; a
    ProcessorError they raise is raised here, in the job's process."""
    cpu_left = _cpu_seconds_left()
    memory_limit, _ = resource.getrlimit(resource.RLIMIT_DATA)
    memory_base = _vm_data_bytes()
    parent = os.getpid()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked process; its frames are what the tests see
        os.close(read_fd)
        _serve(write_fd, parent, cpu_left, open_document, read_page, max_pages)
    os.close(write_fd)
    done = False
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            while not done and (frame := _read_frame(pipe)):
                kind, count, payload = frame
                if kind == b"N":
                    yield count, ""
                elif kind == b"P":
                    yield count, payload.decode("utf-8")
                elif kind == b"E":
                    error = json.loads(payload)
                    raise ProcessorError(error["message"], code=error["code"], details=error["details"])
                elif kind == b"M":
                    raise MemoryError("PDFium's process ran out of memory")
                else:
                    done = kind == b"D"
    finally:
        if not done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
    if not done:  # the pipe ended before the last frame: the process died
        _raise_for_end(status, usage.ru_maxrss * 1024, memory_limit, memory_base)


def _raise_for_end(status: int, peak_rss: int, memory_limit: int, memory_base: int) -> None:
    if os.WIFSIGNALED(status):
        _raise_for_signal(os.WTERMSIG(status), peak_rss, memory_limit, memory_base)
    raise RuntimeError(f"PDFium's process ended early (exit status {os.waitstatus_to_exitcode(status)})")


def _raise_for_signal(number: int, peak_rss: int, memory_limit: int, memory_base: int) -> None:
    if number == signal.SIGXCPU:
        _forward_cpu_limit()
    budget = memory_limit - memory_base if memory_limit != resource.RLIM_INFINITY else 0
    if number in CRASH_SIGNALS and budget > 0 and peak_rss > MEMORY_SHARE * budget:
        raise MemoryError("PDFium's process ran out of memory")
    raise ProcessorError(
        f"The PDF could not be read: PDFium stopped on it (signal {signal.Signals(number).name})",
        code="invalid_pdf",
    )


def _forward_cpu_limit() -> None:
    """The fork spent what was left of the job's CPU time: the job's process is over its
    limit too, and its own SIGXCPU handler reports that (where it has one)."""
    if callable(signal.getsignal(signal.SIGXCPU)):
        os.kill(os.getpid(), signal.SIGXCPU)
    raise ProcessorError(
        "The PDF could not be read within the job's CPU time limit", code="resource_limit",
        details={"limit": "cpu"},
    )


def _cpu_seconds_left() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_CPU)
    if soft == resource.RLIM_INFINITY:
        return 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return max(1, int(soft - usage.ru_utime - usage.ru_stime))


def _vm_data_bytes() -> int:
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _read_frame(pipe) -> tuple[bytes, int, bytes] | None:
    header = pipe.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    kind, count, size = HEADER.unpack(header)
    return kind, count, pipe.read(size) if size else b""


def _serve(fd: int, parent: int, cpu_left: int, open_document, read_page, max_pages: int):  # pragma: no cover
    """The forked process: never returns, never runs the parent's cleanup."""
    status = 1
    try:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the job's process ended before the death signal was armed
            os._exit(1)
        # Only the pipe: a copy of the job's own pipes would keep them open past its death.
        os.closerange(3, fd)
        os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
        # The job's stop signals are its parent's business; a CPU limit here kills this
        # process, which the parent reports.
        signal.signal(signal.SIGXCPU, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        if cpu_left:
            _, hard = resource.getrlimit(resource.RLIMIT_CPU)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_left, hard))
        # Buffered: its write() sends the whole frame, whatever the pipe takes at a time.
        with os.fdopen(fd, "wb") as pipe:
            try:
                document = open_document()
                count = len(document)
                _check_pages(count, max_pages)
                pipe.write(HEADER.pack(b"N", count, 0))
                for number in range(count):
                    text = read_page(document, number)
                    data = text.encode("utf-8", "replace")
                    pipe.write(HEADER.pack(b"P", len(text), len(data)) + data)
                    pipe.flush()  # the job's process reports progress page by page
                pipe.write(HEADER.pack(b"D", 0, 0))
            except ProcessorError as exc:
                data = json.dumps({"message": exc.message, "code": exc.code, "details": exc.details}).encode()
                pipe.write(HEADER.pack(b"E", 0, len(data)) + data)
            except MemoryError:
                pipe.write(HEADER.pack(b"M", 0, 0))
        status = 0
    except BrokenPipeError:
        status = 0  # the parent stopped reading: nothing left to do
    except BaseException:  # noqa: BLE001 - a bug: its traceback goes to the worker's log
        traceback.print_exc()
    finally:
        os._exit(status)


def _check_pages(count: int, max_pages: int) -> None:
    if count > max_pages:
        raise ProcessorError(
            f"The PDF has {count} pages; the limit is {max_pages} (PDF_MAX_PAGES)",
            code="too_many_pages",
        )
