"""Recovery from worker SIGKILLs during long jobs, with the platform's default lease,
heartbeat and sweep settings. Goal: p95 <= 10 s from the kill to the job re-queued.

    .venv/bin/python bench/recovery.py [--kills 20] [--workers 2] [--job-seconds 4] [--broker redis|amqp|both]

--broker amqp runs every process against the machine's RabbitMQ (RABBITMQ_URL, default
amqp://guest:guest@127.0.0.1:5672/) on a vhost of the run's own, with quorum queues; both
(the default) runs the Redis round, then the RabbitMQ round, each in a process of its own.

Each round starts a long job (TEST_SLOW from tests/support/diagnostic_processors.py), waits
until it is running, SIGKILLs the whole worker running it (its process group: no goodbye,
as a machine lost), and starts a new worker in its place. The sweeper runs as its own
process (`manage.py sweep --loop`); beat does not run. Kill -> re-queued is until the job's
PROCESSING -> QUEUED event; kill -> completed until its COMPLETED event.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

from harness import ROOT, Platform


def worker_cmd(name: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "jobplatform", "worker", "-Q", "jobs,maintenance",
            "--concurrency", "2", "--loglevel", "WARNING", "-n", f"{name}@%h", "--without-gossip",
            "--without-mingle"]


def wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"{what}: not within {timeout}s")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def distribution(name: str, values: list[float]) -> str:
    return (f"{name:<22} n={len(values):<3} min={min(values):6.2f}s  p50={statistics.median(values):6.2f}s  "
            f"p95={percentile(values, 95):6.2f}s  max={max(values):6.2f}s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--job-seconds", type=float, default=4.0)
    parser.add_argument("--broker", choices=("redis", "amqp", "both"), default="both")
    args = parser.parse_args()
    if args.broker == "both":
        # Django's settings (the broker among them) are read once per process: a round each.
        rounds = [subprocess.run([sys.executable, __file__, *sys.argv[1:], "--broker", broker]).returncode
                  for broker in ("redis", "amqp")]
        return max(rounds)
    if args.broker == "redis":
        return run(args, {})
    from tests.support.rabbitmq import Unavailable, Vhost

    vhost = Vhost()
    try:
        vhost.create()
    except Unavailable as exc:
        print(f"broker amqp: skipped, {exc}")
        return 0
    try:
        return run(args, {"CELERY_BROKER_URL": vhost.url})
    finally:
        vhost.delete()


def run(args: argparse.Namespace, broker_env: dict) -> int:
    env = {"PROCESSOR_MODULES": "tests.support.diagnostic_processors", "JOB_MAX_WORKER_DEATHS": "1000",
           **broker_env}
    with Platform(workers=args.workers, concurrency=2, web=False, beat=False, extra_env=env) as platform:
        from django.conf import settings

        import storage
        from jobs.models import Job, JobEvent, JobState
        from jobs.services.create import job_create

        S = JobState
        platform.spawn("sweeper", [sys.executable, str(ROOT / "manage.py"), "sweep", "--loop"],
                        settings="jobplatform.settings.worker")
        user, _ = platform.user_and_token()
        chunks = max(1, round(args.job_seconds / 0.1))
        key = storage.upload_key(user.pk, "slow.bin")
        storage.put_bytes(storage.input_bucket(), key, b"x" * chunks * 1024, "application/octet-stream")
        print(f"broker {args.broker}: {settings.CELERY_BROKER_URL.split('://')[0]}"
              f"{' (quorum queues)' if settings.BROKER_IS_AMQP else ''}")
        print(f"defaults: JOB_LEASE_SECONDS={settings.JOB_LEASE_SECONDS} "
              f"JOB_HEARTBEAT_SECONDS={settings.JOB_HEARTBEAT_SECONDS} "
              f"SWEEP_INTERVAL_SECONDS={settings.SWEEP_INTERVAL_SECONDS}; {args.workers} workers x 2 processes; "
              f"killing the whole worker {args.kills} times")

        kills: list[tuple[str, float]] = []  # (job id, kill time)
        for round_ in range(args.kills):
            job = job_create(owner=user, job_type="TEST_SLOW", input_key=key,
                             params={"chunk_size": 1024, "chunk_delay": 0.1}).job
            running = wait(lambda job=job: Job.objects.filter(pk=job.id, state=S.PROCESSING,
                                                              progress_bytes__gt=0).first(), 120, "the job to start")
            # Workers are named bench<i>[-<generation>]@host; process "worker<i>" is bench<i>.
            index = running.worker.split("@")[0].split("-")[0].removeprefix("bench")
            victim = platform.procs[f"worker{index}"]
            kill_at = time.time()
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(30)
            platform.spawn(f"worker{index}", worker_cmd(f"bench{index}-{round_ + 1}"),
                            settings="jobplatform.settings.worker")
            kills.append((str(job.id), kill_at))
            wait(lambda job=job: JobEvent.objects.filter(job_id=job.id, from_state=S.PROCESSING,
                                                         to_state=S.QUEUED).exists(), 120, "the job to be re-queued")
            print(f"  kill {round_ + 1}/{args.kills}: job {str(job.id)[:8]} re-queued", flush=True)

        ids = [job_id for job_id, _ in kills]
        wait(lambda: Job.objects.filter(pk__in=ids, state=S.COMPLETED).count() == len(ids), 600,
             "every job to complete")
        requeued, completed = [], []
        for job_id, kill_at in kills:
            events = JobEvent.objects.filter(job_id=job_id, created_at__gte=datetime.fromtimestamp(kill_at, tz=UTC))
            requeue = events.filter(from_state=S.PROCESSING, to_state=S.QUEUED).order_by("created_at").first()
            done = events.filter(to_state=S.COMPLETED).get()
            requeued.append(requeue.created_at.timestamp() - kill_at)
            completed.append(done.created_at.timestamp() - kill_at)
        print(distribution("kill -> re-queued", requeued))
        print(distribution("kill -> completed", completed))
        p95 = percentile(requeued, 95)
        print(f"goal: p95 kill -> re-queued <= 10 s: {'met' if p95 <= 10 else 'NOT met'} ({p95:.2f}s)")
        return 0 if p95 <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
