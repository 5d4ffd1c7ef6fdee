"""Test inputs that are generated while they are read, so tests can feed processors
more data than they hold in memory."""

from __future__ import annotations

import io
from collections.abc import Callable


class RepeatingStream(io.RawIOBase):
    """``head`` then ``block`` repeated until ``size`` bytes were produced."""

    def __init__(self, block: bytes, size: int, head: bytes = b"") -> None:
        self._head = head
        self._block = block
        self._left = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        if self._left <= 0:
            return b""
        n = min(n, self._left)
        if self._head:
            out, self._head = self._head[:n], self._head[n:]
        else:
            reps = n // len(self._block) + 2
            start = self._pos % len(self._block)
            out = (self._block * reps)[start : start + n]
            self._pos += len(out)
        self._left -= len(out)
        return out


def measure_peak(fn: Callable[[], object]) -> tuple[object, int]:
    """(fn(), peak bytes traced by tracemalloc while it ran); numpy reports its buffers too."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak
