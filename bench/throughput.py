"""Tiny jobs per second through the whole path, API create to COMPLETED, against a no-op
Celery task round trip measured on the same servers in the same run. Goal: ratio >= 0.25.

    .venv/bin/python bench/throughput.py [--jobs 200] [--concurrency 2] [--clients 4] [--rounds 3]

The two are measured in alternating rounds and each side's median is reported: on a
shared 2-core machine one round of either can be off by 25% on its own.
"""

from __future__ import annotations

import argparse
import time

from harness import KeepAliveClient, Platform, run_concurrently, table

# Both sides poll for completion the same way: every 50 ms, one count over an indexed
# timestamp. (A count over the 200 ids themselves cost the polling process ~3 ms of CPU a
# time, on the machine's two cores that the platform needs; the side whose rounds last
# longer, the jobs, paid it more often.) Each side's ids are checked once at the end.
POLL_SECONDS = 0.05
# Registered by bench/noop.py, which the worker loads as its app (`celery -A bench.noop`).
NOOP_TASK = "bench.noop"


def noop_round_trips(n: int) -> float:
    """Publish n no-op tasks and wait until every result is recorded (django-celery-results)."""
    from django.utils import timezone
    from django_celery_results.models import TaskResult

    from jobplatform.celery import app

    since = timezone.now()
    started = time.perf_counter()
    ids = [app.send_task(NOOP_TASK, args=[i], queue="jobs").id for i in range(n)]
    done = TaskResult.objects.filter(task_name=NOOP_TASK, status="SUCCESS", date_done__gte=since)
    deadline = time.monotonic() + 300
    while done.count() < n:
        if time.monotonic() > deadline:
            raise RuntimeError("no-op tasks did not finish within 300s")
        time.sleep(POLL_SECONDS)
    elapsed = time.perf_counter() - started
    assert TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() == n
    return n / elapsed


def jobs_through_the_api(platform: Platform, n: int, clients: int) -> float:
    """n jobs created over HTTP by `clients` concurrent API clients, until all are COMPLETED."""
    import json

    from django.utils import timezone

    import storage
    from jobs.models import Job, JobState

    user, token = platform.user_and_token()
    key = storage.upload_key(user.pk, "tiny.csv")
    storage.put_bytes(storage.input_bucket(), key, b"a,b\n1,2\n3,4\n", "text/csv")
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    body = json.dumps({"job_type": "CSV_ROW_COUNT", "input_object_key": key}).encode()

    def created(status: int, data: bytes) -> str:
        if status != 201:
            raise RuntimeError(f"create failed: {status} {data[:500]!r}")
        return json.loads(data)["id"]

    # `clients` keep-alive connections, each with one request in flight at a time, driven
    # from this one thread on the harness's minimal client: the load generator shares the
    # machine's two cores with the platform (http.client took ~2 ms per request, and a
    # thread per client added its switches).
    shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    connections = [KeepAliveClient(platform.port) for _ in range(clients)]
    since = timezone.now()
    started = time.perf_counter()
    try:
        ids = run_concurrently(connections, shares, "POST", "/api/v1/jobs/", body, headers, created)
    finally:
        for connection in connections:
            connection.close()
    done = Job.objects.filter(owner=user, state=JobState.COMPLETED, created_at__gte=since)
    deadline = time.monotonic() + 300
    while done.count() < n:
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not complete within 300s")
        time.sleep(POLL_SECONDS)
    elapsed = time.perf_counter() - started
    bad = Job.objects.filter(pk__in=ids).exclude(state=JobState.COMPLETED).count()
    assert bad == 0
    return n / elapsed


# Which part of the platform a process is, by its command line (the servers are the embedded stack's).
PARTS = (("uvicorn", "web"), ("celery", "worker"), ("postgres", "PostgreSQL"), ("weed", "SeaweedFS"),
         ("redis", "Redis"))


def cpu_by_part() -> dict[str, float]:
    """CPU seconds (user + system) so far of the bench and of every process it started, by part."""
    import psutil

    me = psutil.Process()
    totals: dict[str, float] = {}
    for process in [me, *me.children(recursive=True)]:
        try:
            command = " ".join(process.cmdline())
            times = process.cpu_times()
        except psutil.Error:
            continue
        part = "bench (load generator)" if process == me else next(
            (name for needle, name in PARTS if needle in command), "other")
        totals[part] = totals.get(part, 0.0) + times.user + times.system
    return totals


def cpu_per_item(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    return {part: 1000 * (after[part] - before.get(part, 0.0)) / n for part in sorted(after)}


def main() -> None:
    import statistics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="jobs (and no-op tasks) per round")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--clients", type=int, default=4, help="concurrent API clients creating jobs")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each; medians are reported")
    args = parser.parse_args()
    baselines, jobs = [], []
    cpu = {"no-op": {}, "job": {}}
    with Platform(concurrency=args.concurrency, worker_app="bench.noop") as platform:
        noop_round_trips(20)  # warm up connections and worker processes
        jobs_through_the_api(platform, 20, args.clients)
        for _ in range(args.rounds):
            before = cpu_by_part()
            baselines.append(noop_round_trips(args.jobs))
            middle = cpu_by_part()
            jobs.append(jobs_through_the_api(platform, args.jobs, args.clients))
            after = cpu_by_part()
            for side, (a, b) in (("no-op", (before, middle)), ("job", (middle, after))):
                for part, ms in cpu_per_item(a, b, args.jobs).items():
                    cpu[side].setdefault(part, []).append(ms)
    baseline, job_rate = statistics.median(baselines), statistics.median(jobs)
    ratio = job_rate / baseline
    print()
    print(table([("no-op Celery task round trip (baseline)", f"{baseline:.1f}", "1.00",
                  " ".join(f"{b:.1f}" for b in baselines)),
                 ("tiny CSV job, API create -> COMPLETED", f"{job_rate:.1f}", f"{ratio:.2f}",
                  " ".join(f"{j:.1f}" for j in jobs))],
                ("path", "per second (median)", "ratio", "rounds")))
    parts = sorted(set(cpu["no-op"]) | set(cpu["job"]))
    rows = [(part, *(f"{statistics.median(cpu[side].get(part, [0.0])):.2f}" for side in ("no-op", "job")))
            for part in parts]
    rows.append(("total", *(f"{sum(statistics.median(v) for v in cpu[side].values()):.2f}"
                            for side in ("no-op", "job"))))
    print("\nCPU ms per no-op task and per job, by process (medians over the rounds):\n")
    print(table(rows, ("process", "per no-op", "per job")))
    print(f"\n{args.jobs} of each per round, {args.rounds} rounds, worker concurrency {args.concurrency}, "
          f"{args.clients} API clients; goal: ratio >= 0.25 -> {'met' if ratio >= 0.25 else 'NOT met'}")


if __name__ == "__main__":
    main()
