"""The multi-host test's hands inside the namespaces: it runs where the services are reachable.

    ip netns exec NS python -m tests.scaleout.agent prepare
    ip netns exec NS python -m tests.scaleout.agent create COUNT   # prints {"ids": [...]}
    ip netns exec NS python -m tests.scaleout.agent watch ID...    # a JSON line per poll
    ip netns exec NS python -m tests.scaleout.agent report ID...   # the same, with the results read back

The environment names the services (DATABASE_URL, REDIS_URL, S3_*) at their namespace
addresses, which the test process itself never connects to. `watch` prints, every half
second, each job's state, its COMPLETED events and who wrote them, and who holds it;
`report` adds the digest in each job's result.json in the output bucket (None if missing).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import django


def prepare() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("ensure_buckets", stdout=open(os.devnull, "w"))  # noqa: SIM115


def create(count: int) -> None:
    from django.contrib.auth import get_user_model

    import storage
    from jobs.services.create import job_create

    owner, _ = get_user_model().objects.get_or_create(username="multihost")
    ids = []
    for i in range(count):
        data = hashlib.sha256(str(i).encode()).digest() * 1024  # 32 KiB, a digest of its own
        key = storage.upload_key(owner.pk, f"multihost-{i}.bin")
        storage.put_bytes(storage.input_bucket(), key, data)
        # 16 chunks of 2 KiB at 0.25 s: a job runs about 4 s, long enough to be cut mid-way.
        job = job_create(owner=owner, job_type="TEST_SLOW", input_key=key,
                         params={"chunk_size": 2048, "chunk_delay": 0.25}).job
        ids.append(str(job.id))
    print(json.dumps({"ids": ids}), flush=True)


def snapshot(ids: list[str], results: bool = False) -> dict:
    import storage
    from jobs.models import Job, JobState

    listed = set(storage.list_keys(storage.output_bucket(), storage.prefixed(""))) if results else set()
    jobs = {}
    for job in Job.objects.filter(pk__in=ids).prefetch_related("events"):
        completed = [event.actor for event in job.events.all() if event.to_state == JobState.COMPLETED]
        in_bucket = storage.output_key(job.id, "result.json") in listed
        digest = None
        if in_bucket:
            document = json.loads(storage.read_bytes(storage.output_bucket(), storage.output_key(job.id, "result.json"),
                                                     10**6))
            digest = document["result"]["sha256"]
        jobs[str(job.id)] = {"state": job.state, "worker": job.worker, "completed_by": completed,
                             "attempts": job.attempts, **({"result_sha256": digest} if results else {})}
    return jobs


def watch(ids: list[str]) -> None:
    while True:
        try:
            print(json.dumps(snapshot(ids)), flush=True)
        except Exception as exc:  # a poll that fails is reported; the next may not
            print(json.dumps({"error": repr(exc)}), flush=True)
        time.sleep(0.5)


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobplatform.settings.worker")
    django.setup()
    command, *rest = argv
    if command == "prepare":
        prepare()
    elif command == "create":
        create(int(rest[0]))
    elif command == "watch":
        watch(rest)
    elif command == "report":
        print(json.dumps(snapshot(rest, results=True)))
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
