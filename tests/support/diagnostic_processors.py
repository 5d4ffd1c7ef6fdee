"""Diagnostic job types for fault tests, registered via PROCESSOR_MODULES in the test run.

TEST_SLOW reads its input slowly (so a worker can be killed mid-job); TEST_KILL_WORKER
kills the process running it, the processor's child of a pool process (a poison pill);
TEST_SPIN burns CPU without ever reporting progress, TEST_SLEEP waits past its own short
time limit, TEST_ALLOCATE allocates memory, TEST_RESULT returns a result of a chosen shape.
They are real processors: they stream the object from S3 and write results through the
runner like any other.
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


def _spin(ctx) -> dict:
    ctx.input.read(CHUNK)
    end, turns = time.monotonic() + float(ctx.params["seconds"]), 0
    while time.monotonic() < end:  # never calls ctx.progress: only the pool process can stop it
        turns += 1
    return {"turns": turns}


register(Processor(
    job_type="TEST_SPIN", version="1", title="Burns CPU (tests)", description="A CPU-bound loop without progress.",
    params_schema={"type": "object", "additionalProperties": False, "properties": {
        "seconds": {"type": "number", "minimum": 0, "default": 60}}},
    run=_spin, soft_time_limit=120, time_limit=150))


def _sleep(ctx) -> dict:
    ctx.input.read(CHUNK)
    time.sleep(float(ctx.params["seconds"]))
    return {}


register(Processor(
    job_type="TEST_SLEEP", version="1", title="Sleeps past its time limit (tests)",
    description="Waits without CPU; its soft time limit is 2 s.",
    params_schema={"type": "object", "additionalProperties": False, "properties": {
        "seconds": {"type": "number", "minimum": 0, "default": 60}}},
    run=_sleep, soft_time_limit=2, time_limit=30))


def _allocate(ctx) -> dict:
    ctx.input.read(CHUNK)
    blocks = []
    for _ in range(int(ctx.params["mib"]) // 16):
        blocks.append(b"\x01" * (16 * 1024 * 1024))  # written, so resident
    return {"allocated_mib": 16 * len(blocks)}


register(Processor(
    job_type="TEST_ALLOCATE", version="1", title="Allocates memory (tests)", description="Holds `mib` MiB.",
    params_schema={"type": "object", "additionalProperties": False, "properties": {
        "mib": {"type": "integer", "minimum": 0, "default": 4096}}},
    run=_allocate))


def _result(ctx) -> dict:
    data = ctx.input.read()
    kind = ctx.params["kind"]
    if kind == "nul":
        return {"header": ["a\x00b"]}
    if kind == "surrogate":
        return {"value": "\ud800"}
    if kind == "long_string":
        return {"text": "y" * 100_000, "bytes": len(data)}
    return {"items": [f"item {i:07d}" for i in range(200_000)]}  # "huge": about 3 MB of JSON


register(Processor(
    job_type="TEST_RESULT", version="1", title="Returns a chosen result (tests)",
    description="A result the database cannot store, a long string, or a huge one.",
    params_schema={"type": "object", "additionalProperties": False, "properties": {
        "kind": {"enum": ["nul", "surrogate", "long_string", "huge"], "default": "huge"}}},
    run=_result))
