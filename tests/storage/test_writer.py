"""storage.new_writer / open_write: the bounded-memory streaming writer, against real S3."""

from __future__ import annotations

import os

import pytest

import storage
from storage import multipart

MIB = 1024 * 1024


def key(name: str) -> str:
    return storage.prefixed(f"writer-tests/{name}")


def open_upload_keys() -> list[str]:
    return [u["key"] for u in multipart.list_open(storage.input_bucket(), key(""))]


def test_odd_sized_writes_across_part_boundaries_store_exactly_the_bytes():
    data = os.urandom(17 * MIB + 3)
    writer = storage.new_writer(storage.input_bucket(), key("odd.bin"), content_type="application/x-test",
                                metadata={"owner": "17"})
    for start in range(0, len(data), 1_000_003):  # never aligned with the 8 MiB parts
        writer.write(data[start:start + 1_000_003])
    info = writer.commit()

    assert info.size == len(data) and info.etag
    assert storage.read_bytes(storage.input_bucket(), key("odd.bin"), len(data)) == data
    head = storage.head(storage.input_bucket(), key("odd.bin"))
    assert (head.etag, head.content_type, head.metadata) == (info.etag, "application/x-test", {"owner": "17"})
    assert open_upload_keys() == []


@pytest.mark.parametrize("size", [0, 1, 8 * MIB])
def test_bodies_of_at_most_one_part_are_stored_whole(size):
    data = os.urandom(size)
    with storage.open_write(storage.input_bucket(), key(f"small-{size}.bin")) as writer:
        writer.write(data)
    assert writer.info.size == size
    assert storage.read_bytes(storage.input_bucket(), key(f"small-{size}.bin"), size) == data


def test_abort_after_parts_were_sent_leaves_no_object_and_no_open_multipart_upload():
    writer = storage.new_writer(storage.input_bucket(), key("aborted.bin"))
    writer.write(os.urandom(17 * MIB))  # more than one part: a multipart upload is open
    writer.abort()

    assert key("aborted.bin") not in open_upload_keys()
    with pytest.raises(storage.ObjectNotFound):
        storage.head(storage.input_bucket(), key("aborted.bin"))


@pytest.mark.parametrize("size", [7, 9 * MIB])  # within one part, and after a multipart upload opened
def test_a_block_that_raises_leaves_no_object_and_no_open_multipart_upload(size):
    with pytest.raises(RuntimeError), storage.open_write(storage.input_bucket(), key("raised.bin")) as writer:
        writer.write(os.urandom(size))
        raise RuntimeError("client went away")

    with pytest.raises(storage.ObjectNotFound):
        storage.head(storage.input_bucket(), key("raised.bin"))
    assert key("raised.bin") not in open_upload_keys()


def test_a_write_storage_refuses_is_access_denied_and_leaves_nothing(settings):
    secret, settings.S3_SECRET_ACCESS_KEY = settings.S3_SECRET_ACCESS_KEY, "not-the-secret"
    writer = storage.new_writer(storage.input_bucket(), key("refused.bin"))
    with pytest.raises(storage.AccessDenied):
        for _ in range(3):
            writer.write(os.urandom(8 * MIB))
    writer.abort()
    settings.S3_SECRET_ACCESS_KEY = secret

    assert key("refused.bin") not in storage.list_keys(storage.input_bucket(), key(""))
