"""SHA256: digest and byte count of the input, streamed."""

from __future__ import annotations

import hashlib

from processors._streams import iter_chunks
from processors.base import Processor, ProcessorContext
from processors.registry import register


def run(ctx: ProcessorContext) -> dict:
    digest = hashlib.sha256()
    size = 0
    for chunk in iter_chunks(ctx):
        digest.update(chunk)
        size += len(chunk)
    return {"sha256": digest.hexdigest(), "bytes": size}


PROCESSOR = register(
    Processor(
        job_type="SHA256",
        version="1.0",
        title="SHA-256 checksum",
        description="SHA-256 hex digest and size in bytes of the input.",
        params_schema={
            "type": "object",
            "properties": {},
            "additionalProperties": False,
        },
        run=run,
    )
)
