"""The baseline task for bench/throughput.py: a task that does nothing.

`celery -A bench.noop worker` runs the project's app with this task registered as well;
nothing in the platform itself names it.
"""

from __future__ import annotations

from jobplatform.celery import app

NAME = "bench.noop"


@app.task(name=NAME, queue="jobs", acks_late=True, soft_time_limit=10, time_limit=20)
def noop(x: int = 0) -> int:
    return x
