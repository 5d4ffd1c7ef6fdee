"""Tiny jobs per second through the whole path, API create to COMPLETED, against a no-op
Celery task round trip measured on the same servers in the same run. Goal: ratio >= 0.25.

    .venv/bin/python bench/throughput.py [--jobs 200] [--concurrency 2] [--clients 4]
"""

from __future__ import annotations

import argparse
import time

from harness import Platform, table


def noop_round_trips(n: int) -> float:
    """Publish n no-op tasks and wait until every result is recorded (django-celery-results),
    polling the table as often as the job side polls its own."""
    from django_celery_results.models import TaskResult

    from jobs.tasks import noop

    started = time.perf_counter()
    ids = [noop.delay(i).id for i in range(n)]
    deadline = time.monotonic() + 300
    while TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() < n:
        if time.monotonic() > deadline:
            raise RuntimeError("no-op tasks did not finish within 300s")
        time.sleep(0.05)
    return n / (time.perf_counter() - started)


def jobs_through_the_api(platform: Platform, n: int, clients: int) -> float:
    """n jobs created over HTTP by `clients` concurrent API clients, until all are COMPLETED."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    import storage
    from jobs.models import Job, JobState

    user, token = platform.user_and_token()
    key = storage.upload_key(user.pk, "tiny.csv")
    storage.put_bytes(storage.input_bucket(), key, b"a,b\n1,2\n3,4\n", "text/csv")
    headers = {"Authorization": f"Token {token}"}

    def create(count: int) -> list[str]:
        with httpx.Client(base_url=platform.url, headers=headers, timeout=30) as client:
            ids = []
            for _ in range(count):
                response = client.post("/api/v1/jobs/", json={"job_type": "CSV_ROW_COUNT", "input_object_key": key})
                response.raise_for_status()
                ids.append(response.json()["id"])
            return ids

    shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ids = [job_id for batch in pool.map(create, shares) for job_id in batch]
    deadline = time.monotonic() + 300
    while Job.objects.filter(pk__in=ids, state=JobState.COMPLETED).count() < n:
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not complete within 300s")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    bad = Job.objects.filter(pk__in=ids).exclude(state=JobState.COMPLETED).count()
    assert bad == 0
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--clients", type=int, default=4, help="concurrent API clients creating jobs")
    args = parser.parse_args()
    with Platform(concurrency=args.concurrency) as platform:
        noop_round_trips(20)  # warm up connections and worker processes
        baseline = noop_round_trips(args.jobs)
        jobs = jobs_through_the_api(platform, args.jobs, args.clients)
    print()
    print(table([("no-op Celery task round trip (baseline)", f"{baseline:.1f}", "1.00"),
                 ("tiny CSV job, API create -> COMPLETED", f"{jobs:.1f}", f"{jobs / baseline:.2f}")],
                ("path", "per second", "ratio")))
    print(f"\n{args.jobs} of each, worker concurrency {args.concurrency}, {args.clients} API clients; "
          f"goal: ratio >= 0.25 -> "
          f"{'met' if jobs / baseline >= 0.25 else 'NOT met'}")


if __name__ == "__main__":
    main()
