"""The messages between a pool process and its processor child: length-prefixed JSON on pipes.

A message is a 4-byte big-endian length and that many bytes of JSON. Every message is a
dict with an "op": run (parent to child), ready, progress, done, failed (child to parent).
"""

from __future__ import annotations

import json
import os
import struct

HEADER = struct.Struct(">I")
# A done message carries the bounded result (JOB_RESULT_MAX_BYTES), never more than this.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ChannelClosed(Exception):
    """The other end closed its pipe: the process exited or was killed."""


def send(fd: int, message: dict) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    data = memoryview(HEADER.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data):]


def _read_exactly(fd: int, size: int) -> bytes:
    parts, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1024 * 1024))
        if not chunk:
            raise ChannelClosed("the pipe closed mid-message" if parts or left < size else "the pipe closed")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def receive(fd: int) -> dict:
    (size,) = HEADER.unpack(_read_exactly(fd, HEADER.size))
    if size > MAX_MESSAGE_BYTES:
        raise ChannelClosed(f"a message of {size} bytes is over the limit")
    return json.loads(_read_exactly(fd, size))
