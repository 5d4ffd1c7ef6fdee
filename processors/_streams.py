"""Shared stream plumbing: chunked reads with progress, and bounded decoded lines."""

from __future__ import annotations

import io
from collections.abc import Iterator

from processors import conf
from processors.base import ProcessorContext, ProcessorError


def iter_chunks(ctx: ProcessorContext, size: int | None = None) -> Iterator[bytes]:
    """Yield the input as it arrives, reporting progress after every chunk.

    ``ctx.progress`` raises Cancelled, so a cancelled job stops here, between chunks.
    """
    size = size or conf.chunk_bytes()
    done = 0
    while True:
        chunk = ctx.input.read(size)
        if not chunk:
            return
        done += len(chunk)
        ctx.progress(done)
        yield chunk


class _ProgressRaw(io.RawIOBase):
    """Adapts ctx.input to the raw-IO protocol TextIOWrapper wants, counting bytes."""

    def __init__(self, ctx: ProcessorContext, size: int) -> None:
        self._chunks = iter_chunks(ctx, size)
        self._pending = b""
        self._pos = (
            0  # offset into _pending: slicing the rest off would copy it per read
        )
        self.consumed = 0  # bytes handed to the decoder so far
        # The latest read and the line count before it: enough to place a decode error.
        self.last = b""
        self.lines_before_last = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._pos >= len(self._pending):
            self._pending = next(self._chunks, b"")
            self._pos = 0
        n = min(len(buffer), len(self._pending) - self._pos)
        self.lines_before_last += count_lines(self.last)
        self.last = self._pending[self._pos : self._pos + n]
        buffer[:n] = self.last
        self._pos += n
        self.consumed += n
        return n


def count_lines(data: bytes) -> int:
    """Line terminators in ``data``: LF, CRLF and lone CR each count once."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


class TextLines:
    """Decoded lines (ends kept, split on \\n, \\r\\n or \\r only) with a length cap.

    csv.reader wants lines; io.TextIOWrapper(newline="") splits exactly like csv expects,
    including a CRLF that straddles two reads. ``readline(limit)`` bounds memory when a
    file has no newlines at all.
    """

    def __init__(
        self, ctx: ProcessorContext, encoding: str, max_line_chars: int
    ) -> None:
        self._raw = _ProgressRaw(ctx, conf.chunk_bytes())
        # No BufferedReader in between: TextIOWrapper then decodes each raw read right
        # away, which is what lets _decode_error turn exc.start into an input offset.
        self._text = io.TextIOWrapper(
            self._raw,  # type: ignore[arg-type]
            encoding=encoding,
            errors="strict",
            newline="",
        )
        self._max = max_line_chars
        self.line_no = 0  # physical lines yielded so far

    @property
    def bytes_read(self) -> int:
        return self._raw.consumed

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                line = self._text.readline(self._max + 1)
            except UnicodeDecodeError as exc:
                raise self._decode_error(exc) from None
            if not line:
                return
            if len(line) > self._max:
                raise ProcessorError(
                    f"Line {self.line_no + 1} is longer than {self._max} characters "
                    "(CSV_MAX_LINE_CHARS); refusing to load it into memory",
                    code="line_too_long",
                    details={"line": self.line_no + 1},
                )
            self.line_no += 1
            yield line

    def _decode_error(self, exc: UnicodeDecodeError) -> ProcessorError:
        raw = self._raw
        # exc.object is the decoder's held-back bytes (a partial character) + the last read.
        held = len(exc.object) - len(raw.last)
        offset = raw.consumed - len(exc.object) + exc.start
        line = (
            raw.lines_before_last
            + count_lines(raw.last[: max(0, exc.start - held)])
            + 1
        )
        return decode_error(exc, offset=offset, line=line)


def decode_error(exc: UnicodeDecodeError, *, offset: int, line: int) -> ProcessorError:
    bad = exc.object[exc.start : exc.end]
    return ProcessorError(
        f"Invalid {exc.encoding} data at byte offset {offset} (line {line}): "
        f"{exc.reason} {bad!r}",
        code="invalid_encoding",
        details={"offset": offset, "line": line},
    )
