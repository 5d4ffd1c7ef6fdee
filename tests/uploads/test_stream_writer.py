"""storage.new_writer (storage.s3.MultipartWriter): the fixed-footprint writer, against real S3."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

import storage
from storage import multipart, new_writer

MIB = 1024 * 1024


def key(name: str) -> str:
    return storage.prefixed(f"stream-writer-tests/{name}")


def test_odd_sized_writes_across_part_boundaries_store_exactly_the_bytes_with_bounded_buffers():
    data = os.urandom(17 * MIB + 3)
    writer = new_writer(storage.input_bucket(), key("odd.bin"))
    for start in range(0, len(data), 1_000_003):  # never aligned with the 8 MiB parts
        writer.write(data[start:start + 1_000_003])
    info = writer.commit()
    assert info.size == len(data) and info.etag
    assert storage.read_bytes(storage.input_bucket(), key("odd.bin"), len(data)) == data
    # One buffer being filled plus the parts in flight: the whole of its memory.
    assert writer.buffers_made <= settings.UPLOAD_MAX_PARTS_IN_FLIGHT + 1


@pytest.mark.parametrize("size", [0, 1, 8 * MIB])
def test_bodies_of_at_most_one_part_are_stored_whole(size):
    data = os.urandom(size)
    writer = new_writer(storage.input_bucket(), key(f"small-{size}.bin"))
    writer.write(data)
    assert writer.commit().size == size
    assert storage.read_bytes(storage.input_bucket(), key(f"small-{size}.bin"), size) == data


def test_abort_leaves_no_object_and_no_open_multipart_upload():
    writer = new_writer(storage.input_bucket(), key("aborted.bin"))
    writer.write(os.urandom(9 * MIB))  # one part sent: a multipart upload is open
    assert any(u["key"] == key("aborted.bin") for u in multipart.list_open(storage.input_bucket(), key("")))
    writer.abort()
    assert not any(u["key"] == key("aborted.bin") for u in multipart.list_open(storage.input_bucket(), key("")))
    assert key("aborted.bin") not in storage.list_keys(storage.input_bucket(), key(""))
