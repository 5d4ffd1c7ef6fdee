"""An in-memory ProcessorContext for tests and local experiments.

ctx = MemoryContext(b"a,b\\n1,2\\n", {"has_header": True}, job_type="CSV_ROW_COUNT")
result = get_processor("CSV_ROW_COUNT").run(ctx)
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from processors.base import Cancelled


class _ChunkedReader(io.RawIOBase):
    """A non-seekable reader whose read(n) returns at most the next scripted size.

    Real S3 streams return short reads; scripting 1-byte or odd sizes puts chunk
    boundaries at every position of the input.
    """

    def __init__(self, source: BinaryIO, sizes: Iterator[int] | None) -> None:
        self._source = source
        self._sizes = sizes

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        if self._sizes is not None:
            cap = next(self._sizes)
            n = cap if n is None or n < 0 else min(n, cap)
        return self._source.read(n)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class MemoryContext:
    def __init__(
        self,
        data: bytes | BinaryIO,
        params: dict | None = None,
        *,
        job_type: str | None = None,
        chunked_reads: int | Sequence[int] | None = None,
        input_size: int | None = None,
        input_name: str = "",
        job_id: str = "test-job",
    ) -> None:
        """``job_type`` given: params are validated and defaulted by that processor, as
        the job factory would. ``chunked_reads``: max bytes per read (an int, or sizes
        cycled). ``input_size`` overrides the declared size (to test lying HEADs)."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            size = len(data)
            source: BinaryIO = io.BytesIO(data)
        else:
            size = 0
            source = data
        if input_size is not None:
            size = input_size
        sizes = None
        if chunked_reads is not None:
            seq = (
                [chunked_reads]
                if isinstance(chunked_reads, int)
                else list(chunked_reads)
            )
            sizes = itertools.cycle(seq)
        if job_type is not None:
            from processors.registry import get_processor

            params = get_processor(job_type).validate_params(params)
        self.job_id = job_id
        self.job_type = job_type
        self.input: BinaryIO = _ChunkedReader(source, sizes)  # type: ignore[assignment]
        self.input_size = size
        self.input_name = input_name
        self.params = params or {}
        self.outputs: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        self.aborted: list[str] = []
        self.progress_calls: list[int] = []
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def progress(self, bytes_read: int) -> None:
        self.progress_calls.append(bytes_read)
        if self._cancelled:
            raise Cancelled(self.job_id)

    @contextmanager
    def open_output(
        self, name: str, content_type: str = "application/octet-stream"
    ) -> Iterator[BinaryIO]:
        buffer = io.BytesIO()
        try:
            yield buffer
        except BaseException:
            # Mirrors the real context: an exception aborts the upload, nothing is committed.
            self.aborted.append(name)
            raise
        self.outputs[name] = buffer.getvalue()
        self.content_types[name] = content_type


def run_processor(
    job_type: str, data: bytes | BinaryIO, params: dict | None = None, **kwargs: object
) -> tuple[dict, MemoryContext]:
    """Validate params, run the processor in memory; returns (result, context)."""
    from processors.registry import get_processor

    ctx = MemoryContext(data, params, job_type=job_type, **kwargs)  # type: ignore[arg-type]
    return get_processor(job_type).run(ctx), ctx
