"""Processors end to end on big objects in the embedded S3, against a plain boto3 download
of the same object measured in the same run; peak RSS of the worker's pool process; and
JSON canonicalization throughput against the `rfc8785` package.

Goals: CSV_ROW_COUNT job time <= 1.25x the download; peak worker RSS <= 128 MiB.

    .venv/bin/python bench/processors.py [--size-mib 1024] [--rounds 3] [--profile-mib 48] [--json-mib 60]

One Celery worker with concurrency 1 runs every job; each job is timed from job_create to
COMPLETED as seen in the database (polled every 50 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import ROOT, Platform, table

# This file shares its name with the processors package: never import it as that.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

MiB = 1024 * 1024
DOWNLOAD_CHUNK = 8 * MiB
RSS_SAMPLE_SECONDS = 0.05
SEED = 20240501

# --- generated inputs ------------------------------------------------------------------------

_FIRST = ["Anna", "Björn", "Chloé", "Dmitri", "Eve", "François", "Gül", "Hiro", "Ines", "José", "Kai", "Łucja",
          "Mei", "Nikolaj", "Olivia", "Pål", "Quinn", "Rūta", "Søren", "Tomás", "Uma", "Vítor", "Wei", "Zoë"]
_LAST = ["Smith", "Müller", "García", "Rossi", "Nowak", "Dubois", "O'Brien", "Nguyen", "Sato", "Kowalski",
         "Andersson", "Ivanova", "Silva", "Jensen", "Yılmaz", "Novák"]
_CITIES = ["Berlin", "São Paulo", "Zürich", "Kraków", "Tokyo", "New York, NY", "Paris", "Malmö", "Reykjavík",
           "Cape Town", "Montréal", "München", "Seoul", "Lagos"]
_WORDS = ["order", "delivered", "late", "refund", "customer", "called", "twice", "box", "damaged", "ok",
          "naïve", "café", "日本語", "größer", "déjà", "vu", "fragile", "urgent", "n/a", "thanks"]


def _note(rng: random.Random) -> str:
    """Mostly plain text; some fields need quoting for a comma, a line break or a quote."""
    words = " ".join(rng.choices(_WORDS, k=rng.randint(0, 8)))
    kind = rng.random()
    if kind < 0.70:
        return words
    if kind < 0.85:
        return f'"{words}, {rng.choice(_WORDS)}"'
    if kind < 0.95:
        return f'"{words}\n{rng.choice(_WORDS)}\r\n{rng.choice(_WORDS)}"'
    return f'"he said ""{rng.choice(_WORDS)}"", then {words}"'


def csv_block(rng: random.Random, first_id: int, rows: int) -> bytes:
    """``rows`` records of 10 columns: ids, names, a quoted city, amounts, dates, notes."""
    out = []
    for i in range(first_id, first_id + rows):
        city = rng.choice(_CITIES)
        city = f'"{city}"' if "," in city else city
        name = f"{rng.choice(_LAST)}, {rng.choice(_FIRST)}"
        created = (f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
                   f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}")
        amount = "" if rng.random() < 0.02 else f"{rng.uniform(-500, 50000):.2f}"
        out.append(f"{i},{rng.getrandbits(64):016x},\"{name}\",user{i % 99991}@example.com,{city},{amount},"
                   f"{rng.randint(0, 1000)},{created},{'true' if rng.random() < 0.5 else 'false'},{_note(rng)}\n")
    return "".join(out).encode()


CSV_HEADER = b"id,token,name,email,city,amount,quantity,created_at,active,note\n"


def write_csv(key: str, size: int, seed: int) -> tuple[int, int]:
    """Streams a CSV of at least ``size`` bytes into the input bucket; returns (bytes, rows).

    A pool of distinct ~1 MiB blocks is generated once and written in a random order, so
    a 1 GiB object costs seconds of Python rather than minutes (the processors do not
    care that blocks repeat; CSV_PROFILE's distinct counts would, so its smaller object
    is all distinct blocks).
    """
    import storage

    rng = random.Random(seed)
    rows_per_block = 8000
    pool = [csv_block(rng, i * rows_per_block, rows_per_block) for i in range(min(64, size // MiB + 1))]
    written, rows = 0, 0
    with storage.open_write(storage.input_bucket(), key, content_type="text/csv") as writer:
        writer.write(CSV_HEADER)
        written += len(CSV_HEADER)
        n = 0
        while written < size:
            block = pool[n] if n < len(pool) else rng.choice(pool)
            writer.write(block)
            written += len(block)
            rows += rows_per_block
            n += 1
    return written, rows


def json_document(size: int, seed: int, *, astral: bool) -> bytes:
    """About ``size`` bytes of JSON: an array of records mixing objects, arrays, integers,
    decimals, exponents, booleans, nulls, escapes and non-ASCII text. ``astral`` adds
    characters beyond the BMP (emoji), which change how keys must be sorted."""
    rng = random.Random(seed)
    text = ["plain", "ünïcödé", "日本語のテキスト", "Ελληνικά", "tab\there", 'quote " and \\ slash',
            "line\nbreak", "\u0001control", "€ and ‰", "русский"]
    if astral:
        text += ["emoji 😀 here", "𝄞 music", "🚀"]
    keys = ["id", "name", "value", "tags", "nested", "é", "z", "aa", "B", "_meta", "ü", "日"]
    if astral:
        keys.append("😀key")
    records = []
    approx = 0
    i = 0
    while approx < size:
        record = {
            "id": i,
            "name": rng.choice(text) + str(i),
            "value": rng.choice([rng.randint(-(2**53), 2**53), rng.uniform(-1e6, 1e6), rng.random() * 1e-3,
                                 round(rng.uniform(0, 100), 2), rng.uniform(1e21, 1e300), 0, -0.0, 1.5]),
            "tags": [rng.choice(text) for _ in range(rng.randint(0, 4))],
            "flags": {"on": rng.random() < 0.5, "missing": None, rng.choice(keys): rng.randint(0, 10**9)},
            "nested": {rng.choice(keys): {"x": rng.random(), "y": [1, 2.5, "3"]}, "list": [[], {}]},
        }
        records.append(record)
        approx += 380  # about the bytes of one record as written below (indent=1)
        i += 1
    data = json.dumps({"records": records, "count": len(records), "version": "1.0"}, ensure_ascii=False,
                      indent=1).encode()
    return data


# --- measuring -------------------------------------------------------------------------------

class CpuMeter:
    """CPU seconds spent by the S3 server and by the worker (main and pool processes)
    over a block: on a 2-core machine they compete, and this shows for what."""

    def __init__(self, platform: Platform):
        import psutil

        worker = psutil.Process(platform.pid("worker0"))
        self.procs = {"s3": [psutil.Process(platform.stack.s3.proc.pid)],
                      "worker": [worker, *worker.children(recursive=True)]}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        import psutil

        totals = dict.fromkeys(self.procs, 0.0)
        for name, procs in self.procs.items():
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    totals[name] += sum(proc.cpu_times()[:2])
        return totals

    def __enter__(self) -> CpuMeter:
        self.start = self._now()
        return self

    def __exit__(self, *exc) -> None:
        end = self._now()
        self.used = {name: end[name] - self.start[name] for name in end}

    def text(self) -> str:
        return f"{self.used['s3']:.1f} / {self.used['worker']:.1f}"


class RssSampler:
    """Samples the worker's pool processes every 50 ms in a side thread: peak RSS (what
    the goal names) and peak USS (pages only that process holds: RSS without what it
    shares with the worker's main process and the rest of the system)."""

    def __init__(self, worker_pid: int):
        import psutil

        self.main = psutil.Process(worker_pid)
        self.peak = self.peak_uss = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, int]:
        import psutil

        rss = uss = 0
        for child in self.main.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                info = child.memory_full_info()
                rss, uss = max(rss, info.rss), max(uss, info.uss)
        return rss, uss

    def _take(self) -> None:
        rss, uss = self.sample()
        self.peak, self.peak_uss = max(self.peak, rss), max(self.peak_uss, uss)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            self._take()
            self.stop_event.wait(RSS_SAMPLE_SECONDS)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join()
        self._take()


def download(key: str) -> float:
    """Seconds for a plain boto3 GET of the whole object, bytes discarded."""
    import storage
    from storage import boto

    started = time.perf_counter()
    body = boto.client().get_object(Bucket=storage.input_bucket(), Key=key)["Body"]
    while body.read(DOWNLOAD_CHUNK):
        pass
    return time.perf_counter() - started


@dataclass
class JobRun:
    seconds: float
    peak_rss: int
    peak_uss: int
    cpu: str = ""
    result: dict = field(default_factory=dict)


def run_job(platform: Platform, user, key: str, job_type: str, params: dict | None = None,
            timeout: float = 900) -> JobRun:
    from jobs.models import Job, JobState
    from jobs.services.create import job_create

    done = {JobState.COMPLETED, JobState.FAILED, JobState.DEAD, JobState.CANCELLED}
    with RssSampler(platform.pid("worker0")) as sampler, CpuMeter(platform) as cpu:
        started = time.perf_counter()
        job = job_create(owner=user, job_type=job_type, input_key=key, params=params or {}).job
        deadline = time.monotonic() + timeout
        while (state := Job.objects.values_list("state", flat=True).get(pk=job.pk)) not in done:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{job_type} job {job.pk} still {state} after {timeout}s")
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    job.refresh_from_db()
    if job.state != JobState.COMPLETED:
        raise RuntimeError(f"{job_type} job {job.pk} ended {job.state}: {job.error_message}")
    return JobRun(seconds, sampler.peak, sampler.peak_uss, cpu.text(), job.result or {})


def in_process_json(data: bytes, repeat: int) -> tuple[float, float, bool]:
    """Best-of-``repeat`` seconds: ours vs json.loads + rfc8785.dumps; and byte equality."""
    import rfc8785

    from processors import conf
    from processors.json_canonicalize import canonicalize

    depth = conf.json_max_depth()
    ours_s, ref_s = [], []
    ours = ref = b""
    for _ in range(repeat):
        started = time.perf_counter()
        ours = canonicalize(data, depth)
        ours_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        ref = rfc8785.dumps(json.loads(data))
        ref_s.append(time.perf_counter() - started)
    return min(ours_s), min(ref_s), ours == ref


# --- the run ---------------------------------------------------------------------------------

def mb_s(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:.0f}"


def mib(n: int) -> str:
    return f"{n / MiB:.0f} MiB"


def memory(run: JobRun) -> str:
    return f"{mib(run.peak_rss)} (USS {mib(run.peak_uss)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="the big CSV (CSV_ROW_COUNT, SHA256)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="download / CSV_ROW_COUNT / SHA256 rounds, interleaved; medians are reported")
    parser.add_argument("--profile-mib", type=int, default=48, help="the CSV for CSV_PROFILE (Python-speed); 0: skip")
    parser.add_argument("--json-mib", type=int, default=60,
                        help="the JSON document (document mode refuses more than 64 MiB by default); 0: skip")
    parser.add_argument("--json-repeat", type=int, default=2, help="in-process canonicalization runs (best of)")
    args = parser.parse_args()
    os.chdir(ROOT)  # Celery's Django fixup puts the working directory first on sys.path
    run_started = time.perf_counter()
    rows_out: list[tuple] = []
    notes: list[str] = []

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - run_started:6.1f}s] {msg}", flush=True)

    with Platform(workers=1, concurrency=1, web=False, beat=False) as platform:
        import storage

        user, _ = platform.user_and_token("bench-processors")
        key = storage.upload_key(user.pk, "big.csv")
        started = time.perf_counter()
        size, rows = write_csv(key, args.size_mib * MiB, SEED)
        log(f"generated {size} bytes, {rows} rows into S3 in {time.perf_counter() - started:.1f}s")

        # A tiny job first: the pool process imports the processors and opens its
        # connections, so the timed jobs measure steady state.
        tiny = storage.upload_key(user.pk, "tiny.csv")
        storage.put_bytes(storage.input_bucket(), tiny, CSV_HEADER + b"1,2,3,4,5,6,7,8,9,10\n", "text/csv")
        sampler = RssSampler(platform.pid("worker0"))
        idle_cold = sampler.sample()
        run_job(platform, user, tiny, "CSV_ROW_COUNT")
        time.sleep(0.5)
        idle = sampler.sample()
        log(f"pool process idle: RSS {mib(idle_cold[0])} before any job, {mib(idle[0])} after a tiny job "
            f"(USS {mib(idle_cold[1])}, {mib(idle[1])})")

        # Interleaved rounds, so that load from elsewhere on the machine hits both sides.
        download(key)  # warm the object store's caches, as every later read finds them
        downloads: list[float] = []
        counts: list[JobRun] = []
        shas: list[JobRun] = []
        download_cpu: list[str] = []
        for n in range(args.rounds):
            with CpuMeter(platform) as cpu:
                downloads.append(download(key))
            download_cpu.append(cpu.text())
            counts.append(run_job(platform, user, key, "CSV_ROW_COUNT"))
            if counts[-1].result.get("rows") != rows:
                raise RuntimeError(f"CSV_ROW_COUNT counted {counts[-1].result.get('rows')} rows; {rows} were written")
            shas.append(run_job(platform, user, key, "SHA256"))
            log(f"round {n + 1}: download {downloads[-1]:.2f}s, CSV_ROW_COUNT {counts[-1].seconds:.2f}s "
                f"(rows {counts[-1].result['rows']} correct), SHA256 {shas[-1].seconds:.2f}s; CPU seconds "
                f"S3 server / worker: {download_cpu[-1]}, {counts[-1].cpu}, {shas[-1].cpu}")
        storage.delete(storage.input_bucket(), key)
        base_s = statistics.median(downloads)
        count_s = statistics.median(r.seconds for r in counts)
        sha_s = statistics.median(r.seconds for r in shas)
        count_mem = max(counts, key=lambda r: r.peak_rss)
        sha_mem = max(shas, key=lambda r: r.peak_rss)
        rows_out.append((f"boto3 get_object download of the {mib(size)} CSV (baseline)", f"{base_s:.2f}",
                         mb_s(size, base_s), "1.00", "-"))
        rows_out.append(("CSV_ROW_COUNT job, create -> COMPLETED", f"{count_s:.2f}", mb_s(size, count_s),
                         f"{count_s / base_s:.2f}", memory(count_mem)))
        rows_out.append(("SHA256 job, create -> COMPLETED", f"{sha_s:.2f}", mb_s(size, sha_s),
                         f"{sha_s / base_s:.2f}", memory(sha_mem)))
        notes.append("per round job/download: CSV_ROW_COUNT "
                     + ", ".join(f"{c.seconds / d:.2f}" for c, d in zip(counts, downloads, strict=True))
                     + "; SHA256 " + ", ".join(f"{h.seconds / d:.2f}" for h, d in zip(shas, downloads, strict=True)))

        if args.profile_mib:
            # CSV_PROFILE parses every field in Python: a smaller object, with its own baseline.
            pkey = storage.upload_key(user.pk, "profile.csv")
            psize, prows = write_csv(pkey, args.profile_mib * MiB, SEED + 1)
            pbase = statistics.median(download(pkey) for _ in range(3))
            profile = run_job(platform, user, pkey, "CSV_PROFILE")
            log(f"CSV_PROFILE on {mib(psize)}: {profile.seconds:.2f}s")
            if profile.result.get("rows") != prows:
                raise RuntimeError(f"CSV_PROFILE counted {profile.result.get('rows')} rows; {prows} were written")
            rows_out.append((f"boto3 download of the {mib(psize)} CSV", f"{pbase:.2f}", mb_s(psize, pbase), "1.00",
                             "-"))
            rows_out.append((f"CSV_PROFILE job ({mib(psize)} CSV)", f"{profile.seconds:.2f}",
                             mb_s(psize, profile.seconds), f"{profile.seconds / pbase:.1f}", memory(profile)))

        if args.json_mib:
            # One JSON document, canonicalized by a job and in this process.
            data = json_document(args.json_mib * MiB, SEED, astral=True)
            jkey = storage.upload_key(user.pk, "doc.json")
            with storage.open_write(storage.input_bucket(), jkey, content_type="application/json") as writer:
                writer.write(data)
            jbase = statistics.median(download(jkey) for _ in range(3))
            canon = run_job(platform, user, jkey, "JSON_CANONICALIZE")
            ours_s, ref_s, same = in_process_json(data, args.json_repeat)
            if canon.result.get("sha256") != hashlib.sha256(canonical_bytes(data)).hexdigest():
                raise RuntimeError("the JSON_CANONICALIZE job's output differs from the in-process canonical bytes")
            log(f"JSON_CANONICALIZE on {mib(len(data))}: job {canon.seconds:.2f}s; in process ours {ours_s:.2f}s, "
                f"rfc8785 {ref_s:.2f}s, identical: {same}")
            rows_out.append((f"boto3 download of the {mib(len(data))} JSON", f"{jbase:.2f}",
                             mb_s(len(data), jbase), "1.00", "-"))
            rows_out.append((f"JSON_CANONICALIZE job ({mib(len(data))} JSON)", f"{canon.seconds:.2f}",
                             mb_s(len(data), canon.seconds), f"{canon.seconds / jbase:.1f}", memory(canon)))
            rows_out.append(("  in process: ours (canonicalize)", f"{ours_s:.2f}", mb_s(len(data), ours_s), "-", "-"))
            rows_out.append(("  in process: json.loads + rfc8785.dumps", f"{ref_s:.2f}", mb_s(len(data), ref_s),
                             "-", "-"))
            notes.append(f"JSON: ours is {ref_s / ours_s:.2f}x the speed of json.loads + rfc8785.dumps; "
                         f"byte-identical output: {same}")
            if not same:
                raise RuntimeError("our canonical JSON differs from rfc8785's")

    print()
    print(table(rows_out, ("path", "seconds", "MB/s", "ratio vs baseline", "peak RSS")))
    print()
    print(f"big CSV: {size} bytes, {rows} data rows, counted right in every round; {args.rounds} rounds, medians; "
          f"one worker, concurrency 1")
    print(f"pool process idle RSS {mib(idle[0])} after a tiny job ({mib(idle_cold[0])} before its first job); "
          f"USS {mib(idle[1])}")
    ratio = count_s / base_s
    print(f"goal CSV_ROW_COUNT <= 1.25x download: {ratio:.2f}x -> {'met' if ratio <= 1.25 else 'NOT met'}")
    print(f"goal peak worker RSS <= 128 MiB (CSV_ROW_COUNT): {mib(count_mem.peak_rss)} -> "
          f"{'met' if count_mem.peak_rss <= 128 * MiB else 'NOT met'}; the job itself adds "
          f"{mib(count_mem.peak_rss - idle[0])} to the idle process")
    for note in notes:
        print(note)
    print(f"total run time {time.perf_counter() - run_started:.0f}s")


def canonical_bytes(data: bytes) -> bytes:
    from processors import conf
    from processors.json_canonicalize import canonicalize

    return canonicalize(data, conf.json_max_depth())


if __name__ == "__main__":
    main()
