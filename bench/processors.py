"""Processors end to end on objects in the embedded S3, each job beside an anchor measured on
the same bytes in the same run, and the peak RSS of the worker's pool process and of its
processor child (`python -m jobs.isolation.child`) per job type.

| job | anchor | goal |
|---|---|---|
| CSV_ROW_COUNT | the SHA256 job on the same object | job time <= 1.1x SHA256's |
| CSV_PROFILE | pyarrow's streaming CSV reader, one thread, per-column min/max, nulls | >= 0.5x its speed |
| JSON_CANONICALIZE | json.loads + rfc8785.dumps in this process (document, JSON Lines) | >= 3x, RSS <= 8x input |
| PDF_EXTRACT_TEXT | pypdf's extract_text in this process | >= 5x its pages/s on the text-heavy PDF |

Peak RSS <= 128 MiB for CSV_ROW_COUNT and SHA256 (pool process and child each).

    .venv/bin/python bench/processors.py [--size-mib 1024] [--rounds 3] [--profile-mib 200]
        [--json-mib 60] [--jsonl-mib 60] [--pdf-pages 500]

Every input is generated here: a mixed-type CSV (quoted fields with commas, line breaks and
doubled quotes; nulls; dates), a JSON document and a JSON Lines file (non-ASCII, astral-plane
keys, exponents), and PDFs printed by headless Chromium (short, text-heavy, no text layer,
encrypted with an empty user password). A size of 0 skips that part; without Chromium the
PDF part is skipped. One Celery worker with concurrency 1 runs every job; each job is timed
from job_create to COMPLETED as seen in the database (polled every 50 ms).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
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
CHILD_MODULE = "jobs.isolation.child"

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


def jsonl_lines(size: int, seed: int) -> bytes:
    """About ``size`` bytes of JSON Lines: the records of json_document, one per line (a
    record takes fewer bytes on one line than indented, so more are generated)."""
    lines, total = [], 0
    for record in json.loads(json_document(size * 2, seed, astral=True))["records"]:
        if total >= size:
            break
        lines.append(json.dumps(record, ensure_ascii=False).encode() + b"\n")
        total += len(lines[-1])
    return b"".join(lines)


_PDF_WORDS = ["the", "quarterly", "report", "shows", "revenue", "growth", "across", "all", "regions",
              "customers", "ordered", "more", "units", "than", "forecast", "margin", "improved", "while",
              "costs", "fell", "naïve", "café", "Zürich", "Ærøskøbing", "delivery", "warehouse", "2024"]


def _text_html(rng: random.Random, paragraphs: int) -> str:
    body = "".join(f"<h2>Section {i + 1}</h2>" if i % 12 == 0 else
                   "<p>" + " ".join(rng.choices(_PDF_WORDS, k=rng.randint(60, 140))) + ".</p>"
                   for i in range(paragraphs))
    return f"<html><head><meta charset='utf-8'></head><body style='font: 9pt serif'>{body}</body></html>"


def _canvas_html(pages: int) -> str:
    """Pages of text painted on canvases: Chromium prints them as images, with no text layer."""
    canvases = "".join(f"<canvas id='c{i}' width='760' height='1000' style='page-break-after: always'></canvas>"
                       for i in range(pages))
    script = ("for (const c of document.querySelectorAll('canvas')) { const g = c.getContext('2d');"
              " g.font = '16px serif'; for (let y = 30; y < 1000; y += 22)"
              " g.fillText('scanned page without a text layer, line ' + y, 20, y); }")
    return f"<html><body style='margin: 0'>{canvases}<script>{script}</script></body></html>"


def chromium_pdf(html: str, workdir: Path, name: str) -> bytes:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    page = workdir / f"{name}.html"
    out = workdir / f"{name}.pdf"
    page.write_text(html, encoding="utf-8")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    f"--user-data-dir={workdir / 'profile'}", f"--print-to-pdf={out}", page.as_uri()],
                   check=True, capture_output=True, timeout=600)
    return out.read_bytes()


def encrypt_empty_password(pdf: bytes) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password="", owner_password="bench-owner", algorithm="AES-128")  # noqa: S106 - a test file
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_pdfs(pages: int, seed: int, workdir: Path) -> dict[str, bytes]:
    """The PDF set: short, text-heavy (about ``pages`` pages), no text layer, encrypted."""
    rng = random.Random(seed)
    short = chromium_pdf(_text_html(rng, 6), workdir, "short")
    heavy = b""
    paragraphs = pages * 6
    for _ in range(4):  # a page holds about six paragraphs; adjust once if far off
        heavy = chromium_pdf(_text_html(random.Random(seed), paragraphs), workdir, "heavy")
        got = pdf_pages(heavy)
        if abs(got - pages) <= pages // 20:
            break
        paragraphs = max(1, paragraphs * pages // max(got, 1))
    scanned = chromium_pdf(_canvas_html(max(1, min(pages, 20))), workdir, "scanned")
    return {"short": short, "text-heavy": heavy, "no text layer": scanned,
            "encrypted, empty user password": encrypt_empty_password(short)}


def pdf_pages(pdf: bytes) -> int:
    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(pdf)).pages)


# --- measuring -------------------------------------------------------------------------------

class CpuMeter:
    """CPU seconds spent by the S3 server and by the worker (main, pool and child processes)
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
    """Samples, every 50 ms in a side thread, the RSS of the worker's pool process and of
    the processor child that process runs jobs in (a fresh `python -m jobs.isolation.child`
    whenever the last one was recycled): the peak of each."""

    def __init__(self, worker_pid: int):
        import psutil

        self.main = psutil.Process(worker_pid)
        self.kinds: dict[int, str] = {}  # pid -> "pool" or "child"
        self.peak = {"pool": 0, "child": 0}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _kind(self, proc) -> str:
        if proc.pid not in self.kinds:
            self.kinds[proc.pid] = "child" if CHILD_MODULE in proc.cmdline() else "pool"
        return self.kinds[proc.pid]

    def sample(self) -> dict[str, int]:
        import psutil

        now = {"pool": 0, "child": 0}
        for proc in self.main.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                kind = self._kind(proc)
                now[kind] = max(now[kind], proc.memory_info().rss)
        return now

    def _take(self) -> None:
        for kind, rss in self.sample().items():
            self.peak[kind] = max(self.peak[kind], rss)

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
    job_type: str
    seconds: float
    pool_rss: int
    child_rss: int
    cpu: str = ""
    result: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)
    worker_cpu: float = 0.0  # CPU seconds of the worker's processes (main, pool, child)

    def output(self, name: str, max_bytes: int = 1024 * MiB) -> bytes:
        import storage

        key = next(k for k in self.outputs if k.rsplit("/", 1)[-1] == name)
        return storage.read_bytes(storage.output_bucket(), key, max_bytes)


def run_job(platform: Platform, user, key: str, job_type: str, params: dict | None = None,
            timeout: float = 1800) -> JobRun:
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
        raise RuntimeError(f"{job_type} job {job.pk} ended {job.state}: {job.error_code} {job.error_message}")
    return JobRun(job_type, seconds, sampler.peak["pool"], sampler.peak["child"], cpu.text(), job.result or {},
                  list(job.result_keys), cpu.used["worker"])


def best_of(repeat: int, fn) -> tuple[float, object]:
    """Best-of-``repeat`` seconds of ``fn()`` and its last value."""
    times, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return min(times), value


def pyarrow_profile(key: str) -> tuple[int, dict]:
    """The anchor for CSV_PROFILE: pyarrow's streaming CSV reader on one thread, reading the
    object from S3 as the job does, with type inference, then null counts and min/max per
    column, batch by batch (memory stays one block). Returns (rows, {column: (type, nulls, min, max)})."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pacsv

    import storage

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    rows, stats = 0, {}
    with storage.open_read(storage.input_bucket(), key) as stream:
        reader = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(use_threads=False, block_size=4 * MiB),
                                parse_options=pacsv.ParseOptions(newlines_in_values=True))
        for batch in reader:
            rows += batch.num_rows
            for name, column in zip(batch.schema.names, batch.columns, strict=True):
                found = pc.min_max(column)
                lo, hi = found["min"].as_py(), found["max"].as_py()
                typ, nulls, old_lo, old_hi = stats.get(name, (str(column.type), 0, lo, hi))
                lo = old_lo if lo is None else lo if old_lo is None else min(lo, old_lo)
                hi = old_hi if hi is None else hi if old_hi is None else max(hi, old_hi)
                stats[name] = (typ, nulls + column.null_count, lo, hi)
    return rows, stats


def pypdf_text(pdf: bytes) -> tuple[int, str]:
    """The anchor for PDF_EXTRACT_TEXT: pypdf's extract_text, page by page."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(pdf))
    if reader.is_encrypted:
        reader.decrypt("")
    return len(reader.pages), "\f".join(page.extract_text() or "" for page in reader.pages)


def word_difference(ours: str, theirs: str) -> float:
    """How far two texts' word multisets are apart: words in one and not the other (with
    multiplicity), over the larger word count."""
    a, b = collections.Counter(ours.split()), collections.Counter(theirs.split())
    total = max(sum(a.values()), sum(b.values()))
    return sum(((a - b) + (b - a)).values()) / total if total else 0.0


def jsonl_reference(data: bytes) -> bytes:
    import rfc8785

    return b"".join(rfc8785.dumps(json.loads(line)) + b"\n" for line in data.splitlines() if line.strip())


# --- the run ---------------------------------------------------------------------------------

def mb_s(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:.0f}"


def mib(n: int) -> str:
    return f"{n / MiB:.0f} MiB"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="the big CSV (CSV_ROW_COUNT vs SHA256)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="download / CSV_ROW_COUNT / SHA256 rounds, interleaved; medians are reported")
    parser.add_argument("--profile-mib", type=int, default=200, help="the CSV for CSV_PROFILE; 0: skip")
    parser.add_argument("--json-mib", type=int, default=60,
                        help="the JSON document (document mode refuses more than 64 MiB by default); 0: skip")
    parser.add_argument("--jsonl-mib", type=int, default=60, help="the JSON Lines file; 0: skip")
    parser.add_argument("--pdf-pages", type=int, default=500, help="pages of the text-heavy PDF; 0: skip")
    parser.add_argument("--repeat", type=int, default=2, help="in-process anchor runs (best of)")
    args = parser.parse_args()
    os.chdir(ROOT)  # Celery's Django fixup puts the working directory first on sys.path
    run_started = time.perf_counter()
    rows_out: list[tuple] = []
    goals: list[str] = []
    notes: list[str] = []
    memory: dict[str, JobRun] = {}  # job type -> its run with the highest child RSS

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - run_started:6.1f}s] {msg}", flush=True)

    def keep_memory(run: JobRun) -> None:
        if run.job_type not in memory or run.child_rss > memory[run.job_type].child_rss:
            memory[run.job_type] = run

    def row(what: str, size: int, job: JobRun, anchor: str, anchor_s: float | None, ratio: str) -> None:
        rows_out.append((what, mib(size), f"{job.seconds:.2f}", mb_s(size, job.seconds), anchor,
                         "-" if anchor_s is None else f"{anchor_s:.2f}", ratio, mib(job.pool_rss),
                         mib(job.child_rss)))
        keep_memory(job)

    with Platform(workers=1, concurrency=1, web=False, beat=False) as platform:
        import storage

        user, _ = platform.user_and_token("bench-processors")

        # A tiny job first: the pool process imports the processors and starts its child, so
        # the timed jobs measure steady state.
        tiny = storage.upload_key(user.pk, "tiny.csv")
        storage.put_bytes(storage.input_bucket(), tiny, CSV_HEADER + b"1,2,3,4,5,6,7,8,9,10\n", "text/csv")
        sampler = RssSampler(platform.pid("worker0"))
        idle_cold = sampler.sample()
        run_job(platform, user, tiny, "CSV_ROW_COUNT")
        time.sleep(0.5)
        idle = sampler.sample()
        log(f"idle RSS before any job: pool {mib(idle_cold['pool'])}; after a tiny job: pool "
            f"{mib(idle['pool'])}, child {mib(idle['child'])}")

        def attempt(what: str, part, *part_args) -> None:
            try:
                part(*part_args)
            except Exception as exc:  # noqa: BLE001 - one part failing must not lose the others' numbers
                log(f"{what}: failed: {type(exc).__name__}: {exc}")
                notes.append(f"{what}: not measured: {type(exc).__name__}: {str(exc)[:300]}")

        def rowcount_part() -> None:
            key = storage.upload_key(user.pk, "big.csv")
            started = time.perf_counter()
            size, rows = write_csv(key, args.size_mib * MiB, SEED)
            log(f"generated {size} bytes, {rows} rows into S3 in {time.perf_counter() - started:.1f}s")
            # Interleaved rounds, so that load from elsewhere on the machine hits every side.
            download(key)  # warm the object store's caches, as every later read finds them
            downloads: list[float] = []
            counts: list[JobRun] = []
            shas: list[JobRun] = []
            for n in range(args.rounds):
                with CpuMeter(platform) as cpu:
                    downloads.append(download(key))
                counts.append(run_job(platform, user, key, "CSV_ROW_COUNT"))
                if counts[-1].result.get("rows") != rows:
                    raise RuntimeError(f"CSV_ROW_COUNT counted {counts[-1].result.get('rows')} rows; {rows} written")
                shas.append(run_job(platform, user, key, "SHA256"))
                log(f"round {n + 1}: download {downloads[-1]:.2f}s, CSV_ROW_COUNT {counts[-1].seconds:.2f}s "
                    f"(rows correct), SHA256 {shas[-1].seconds:.2f}s; CPU seconds S3 server / worker: "
                    f"{cpu.text()}, {counts[-1].cpu}, {shas[-1].cpu}")
            storage.delete(storage.input_bucket(), key)
            base_s = statistics.median(downloads)
            count_s = statistics.median(r.seconds for r in counts)
            sha_s = statistics.median(r.seconds for r in shas)
            count_mem = max(counts, key=lambda r: r.child_rss)
            sha_mem = max(shas, key=lambda r: r.child_rss)
            rows_out.append(("boto3 download (a floor, not a goal)", mib(size), f"{base_s:.2f}", mb_s(size, base_s),
                             "-", "-", "-", "-", "-"))
            row("SHA256 job", size, replace_seconds(sha_mem, sha_s), "-", None, "-")
            ratio = count_s / sha_s
            row("CSV_ROW_COUNT job", size, replace_seconds(count_mem, count_s), "SHA256 job", sha_s,
                f"{ratio:.2f}x time")
            ratios = [c.seconds / h.seconds for c, h in zip(counts, shas, strict=True)]
            goals.append(f"CSV_ROW_COUNT <= 1.1x the SHA256 job: {ratio:.2f}x -> {verdict(ratio <= 1.1)} "
                         f"(per round: {', '.join(f'{r:.2f}' for r in ratios)}; median of those "
                         f"{statistics.median(ratios):.2f})")
            count_cpu = statistics.median(r.worker_cpu for r in counts)
            sha_cpu = statistics.median(r.worker_cpu for r in shas)
            notes.append(f"worker CPU seconds per job (median): CSV_ROW_COUNT {count_cpu:.2f}, SHA256 {sha_cpu:.2f}; "
                         "the S3 server's are in the round lines")
            for run in (count_mem, sha_mem):
                peak = max(run.pool_rss, run.child_rss)
                goals.append(f"peak RSS <= 128 MiB for {run.job_type}: pool {mib(run.pool_rss)}, child "
                             f"{mib(run.child_rss)} -> {verdict(peak <= 128 * MiB)}")
            notes.append(f"big CSV: {size} bytes, {rows} data rows, counted right in every round; {args.rounds} "
                         f"rounds, medians")

        def profile_part() -> None:
            pkey = storage.upload_key(user.pk, "profile.csv")
            psize, prows = write_csv(pkey, args.profile_mib * MiB, SEED + 1)
            log(f"generated {mib(psize)} for CSV_PROFILE")
            profile = run_job(platform, user, pkey, "CSV_PROFILE")
            if profile.result.get("rows") != prows:
                raise RuntimeError(f"CSV_PROFILE counted {profile.result.get('rows')} rows; {prows} were written")
            arrow_s, (arrow_rows, _) = best_of(args.repeat, lambda: pyarrow_profile(pkey))
            if arrow_rows != prows:
                raise RuntimeError(f"pyarrow read {arrow_rows} rows; {prows} were written")
            storage.delete(storage.input_bucket(), pkey)
            speed = arrow_s / profile.seconds
            log(f"CSV_PROFILE {profile.seconds:.2f}s; pyarrow {arrow_s:.2f}s")
            row("CSV_PROFILE job", psize, profile, "pyarrow streaming, 1 thread", arrow_s, f"{speed:.2f}x speed")
            goals.append(f"CSV_PROFILE >= 0.5x pyarrow's speed: {speed:.2f}x -> {verdict(speed >= 0.5)}")

        def json_part(mode: str, size_mib: int) -> None:
            import rfc8785

            data = (json_document(size_mib * MiB, SEED, astral=True) if mode == "document"
                    else jsonl_lines(size_mib * MiB, SEED + 2))
            jkey = storage.upload_key(user.pk, f"data.{'json' if mode == 'document' else 'jsonl'}")
            with storage.open_write(storage.input_bucket(), jkey, content_type="application/json") as writer:
                writer.write(data)
            canon = run_job(platform, user, jkey, "JSON_CANONICALIZE", {"mode": mode})
            storage.delete(storage.input_bucket(), jkey)
            if mode == "document":
                ref_s, ref = best_of(args.repeat, lambda data=data: rfc8785.dumps(json.loads(data)))
            else:
                ref_s, ref = best_of(args.repeat, lambda data=data: jsonl_reference(data))
            if canon.result.get("sha256") != hashlib.sha256(ref).hexdigest():
                raise RuntimeError(f"the JSON_CANONICALIZE ({mode}) output differs from rfc8785's")
            speed = ref_s / canon.seconds
            log(f"JSON_CANONICALIZE {mode} on {mib(len(data))}: job {canon.seconds:.2f}s, "
                f"json.loads + rfc8785.dumps {ref_s:.2f}s; output identical to rfc8785's")
            row(f"JSON_CANONICALIZE job, {mode}", len(data), canon, "json.loads + rfc8785.dumps", ref_s,
                f"{speed:.2f}x speed")
            times = canon.child_rss / len(data)
            growth = (canon.child_rss - idle["child"]) / len(data)
            goals.append(f"JSON_CANONICALIZE ({mode}) >= 3x json.loads + rfc8785.dumps: {speed:.2f}x -> "
                         f"{verdict(speed >= 3)}; child peak RSS {mib(canon.child_rss)} = {times:.1f}x the input "
                         f"-> {verdict(times <= 8)} (<= 8x; {growth:.1f}x counting only its growth over the "
                         f"idle child)")

        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if args.pdf_pages and not chromium:
            notes.append("PDF part skipped: no chromium on PATH to print the PDFs")

        def pdf_part() -> None:
            with tempfile.TemporaryDirectory(prefix="bench-pdf-") as tmp:
                started = time.perf_counter()
                pdfs = make_pdfs(args.pdf_pages, SEED, Path(tmp))
                log(f"printed {len(pdfs)} PDFs with Chromium in {time.perf_counter() - started:.1f}s")
            for name, pdf in pdfs.items():
                dkey = storage.upload_key(user.pk, f"{name.split(',')[0].replace(' ', '-')}.pdf")
                storage.put_bytes(storage.input_bucket(), dkey, pdf, "application/pdf")
                job = run_job(platform, user, dkey, "PDF_EXTRACT_TEXT")
                storage.delete(storage.input_bucket(), dkey)
                text = job.output("text.txt").decode("utf-8")
                repeat = args.repeat if name != "text-heavy" else 1  # pypdf takes a while on it
                ref_s, (pages, ref_text) = best_of(repeat, lambda pdf=pdf: pypdf_text(pdf))
                if job.result.get("pages") != pages:
                    raise RuntimeError(f"PDF_EXTRACT_TEXT saw {job.result.get('pages')} pages of {name}; pypdf {pages}")
                speed = ref_s / job.seconds
                diff = word_difference(text, ref_text)
                log(f"PDF_EXTRACT_TEXT {name} ({pages} pages): job {job.seconds:.2f}s, pypdf {ref_s:.2f}s, "
                    f"word multiset difference {diff:.2%}")
                row(f"PDF_EXTRACT_TEXT job, {name} ({pages} p.)", len(pdf), job, "pypdf extract_text", ref_s,
                    f"{speed:.2f}x pages/s")
                notes.append(f"PDF {name}: {pages} pages, {len(text.split())} words extracted (pypdf "
                             f"{len(ref_text.split())}); word multiset difference {diff:.2%}")
                if name == "text-heavy":
                    goals.append(f"PDF_EXTRACT_TEXT >= 5x pypdf's pages/s on the text-heavy PDF: {speed:.2f}x -> "
                                 f"{verdict(speed >= 5)}; same text: word multiset difference {diff:.2%} -> "
                                 f"{verdict(diff < 0.02)} (< 2%)")

        if args.size_mib:
            attempt("CSV_ROW_COUNT vs SHA256", rowcount_part)
        if args.profile_mib:
            attempt("CSV_PROFILE", profile_part)
        for mode, size_mib in (("document", args.json_mib), ("jsonl", args.jsonl_mib)):
            if size_mib:
                attempt(f"JSON_CANONICALIZE {mode}", json_part, mode, size_mib)
        if args.pdf_pages and chromium:
            attempt("PDF_EXTRACT_TEXT", pdf_part)

    print()
    print(table(rows_out, ("job", "input", "seconds", "MB/s", "anchor (same bytes, same run)", "anchor s", "ratio",
                           "pool RSS", "child RSS")))
    print()
    print("peak RSS per job type (pool process / processor child): "
          + "; ".join(f"{t} {mib(r.pool_rss)} / {mib(r.child_rss)}" for t, r in memory.items()))
    print(f"idle RSS after a tiny job: pool {mib(idle['pool'])}, child {mib(idle['child'])} "
          f"(pool {mib(idle_cold['pool'])} before its first job)")
    for goal in goals:
        print(f"goal {goal}")
    for note in notes:
        print(note)
    print(f"one worker, concurrency 1; total run time {time.perf_counter() - run_started:.0f}s")


def replace_seconds(run: JobRun, seconds: float) -> JobRun:
    """The run whose memory is reported, with the rounds' median time."""
    return JobRun(run.job_type, seconds, run.pool_rss, run.child_rss, run.cpu, run.result, run.outputs,
                  run.worker_cpu)


if __name__ == "__main__":
    main()
