"""Diagnostic job types for fault tests, registered via PROCESSOR_MODULES in the test run.

TEST_SLOW reads its input slowly (so a worker can be killed mid-job); TEST_KILL_WORKER
kills the worker process running it (a poison pill). They are real processors: they
stream the object from S3 and write results through the runner like any other.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time

from processors import Processor, register

CHUNK = 64 * 1024


def _slow(ctx) -> dict:
    digest, total = hashlib.sha256(), 0
    delay = float(ctx.params["chunk_delay"])
    while chunk := ctx.input.read(ctx.params["chunk_size"]):
        digest.update(chunk)
        total += len(chunk)
        ctx.progress(total)
        time.sleep(delay)
    return {"sha256": digest.hexdigest(), "bytes": total, "pid": os.getpid()}


def _kill(ctx) -> dict:
    ctx.input.read(CHUNK)
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


register(Processor(
    job_type="TEST_SLOW", version="1", title="Slow checksum (tests)", description="Reads slowly.",
    params_schema={"type": "object", "additionalProperties": False, "properties": {
        "chunk_delay": {"type": "number", "minimum": 0, "default": 0.1},
        "chunk_size": {"type": "integer", "minimum": 1, "default": CHUNK}}},
    run=_slow, soft_time_limit=120, time_limit=150))

register(Processor(
    job_type="TEST_KILL_WORKER", version="1", title="Kills its worker (tests)", description="A poison pill.",
    params_schema={"type": "object", "additionalProperties": False, "properties": {}},
    run=_kill))

# What a worker's pool process need not load: the root URLconf, the API's URLs and views, drf-spectacular.
HEAVY_MODULES = ("jobplatform.urls", "jobs.api.urls", "jobs.api.views", "drf_spectacular.views")


def _modules(ctx) -> dict:
    ctx.input.read(CHUNK)
    return {"loaded": sorted(name for name in HEAVY_MODULES if name in sys.modules)}


register(Processor(
    job_type="TEST_MODULES", version="1", title="Reports loaded modules (tests)",
    description="Which heavy modules the worker process has loaded.",
    params_schema={"type": "object", "additionalProperties": False, "properties": {}},
    run=_modules))
