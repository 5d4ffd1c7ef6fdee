"""SHA256: digest and size of the input, streamed."""

from __future__ import annotations

import hashlib

import pytest

from processors import Cancelled, get_processor
from processors.testing import MemoryContext, run_processor

from .streams import RepeatingStream, measure_peak


@pytest.mark.parametrize(
    ("data", "chunked"),
    [
        (b"", None),
        (b"", 1),
        (b"abc", None),
        (b"abc", 1),
        (bytes(range(256)) * 1000, None),
        (bytes(range(256)) * 1000, 7),
    ],
)
def test_digest_and_size(data, chunked):
    result, ctx = run_processor("SHA256", data, chunked_reads=chunked)
    assert result == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert ctx.outputs == {}


def test_known_vector():
    assert run_processor("SHA256", b"abc")[0]["sha256"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_memory_stays_flat_on_a_large_stream():
    size = 96 * 1024 * 1024
    result, peak = measure_peak(
        lambda: run_processor(
            "SHA256", RepeatingStream(b"0123456789", size), input_size=size
        )[0]  # type: ignore[arg-type]
    )
    assert result["bytes"] == size
    assert peak < 16 * 1024 * 1024


def test_cancellation_stops_at_the_next_chunk():
    ctx = MemoryContext(b"x" * 100, chunked_reads=10)
    ctx.cancel()
    with pytest.raises(Cancelled):
        get_processor("SHA256").run(ctx)
    assert ctx.progress_calls == [10]
