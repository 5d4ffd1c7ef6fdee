"""CSV_PROFILE micro-bench: our processor against pyarrow's single-threaded streaming CSV
reader with type inference and per-column min/max, on the same generated file, in one run.

    .venv/bin/python bench/csv_profile.py [--mb 200] [--repeat 2]

The input is made at run time: a mixed-type CSV of at least --mb MB (integers, decimals,
booleans, dates, datetimes, names, nulls, quoted fields with delimiters, doubled quotes and
embedded newlines). Both read the file from disk; each timing is the best of --repeat runs,
in wall and CPU seconds (the machine may be shared; CPU time is the steadier figure). Peak
RSS is measured in a child process that runs the processor once on the file.

Goal: CSV_PROFILE >= 0.5x pyarrow's streaming profile (MB/s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1000 * 1000
SEED = 18
NAMES = ["ann", "bob", "chloé", "dmitri", "eve", "李", "o'neil", "zoë"]


def write_csv(path: str, size: int) -> None:
    rng = random.Random(SEED)
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("id,price,active,day,at,name,note,count\n")
        i = 0
        while out.tell() < size:
            rows = []
            for _ in range(10_000):
                i += 1
                if i % 40 == 0:
                    note = '"a, quoted ""note""\nover two lines"'
                elif i % 7 == 0:
                    note = ""
                else:
                    note = f"note {rng.randint(0, 10**6)}"
                rows.append(
                    f"{i},{rng.random() * 1000:.3f},{'true' if i % 3 else 'false'},"
                    f"20{i % 30 + 10}-{i % 12 + 1:02d}-{i % 28 + 1:02d},"
                    f"2024-01-{i % 28 + 1:02d}T{i % 24:02d}:{i % 60:02d}:{i % 59:02d},"
                    f"{'' if i % 11 == 0 else NAMES[i % len(NAMES)] + str(i % 5000)},{note},"
                    f"{'' if i % 13 == 0 else rng.randint(-5000, 5000)}\n"
                )
            out.write("".join(rows))


def best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def pyarrow_profile(path: str) -> dict:
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(use_threads=False, block_size=4 * 1024 * 1024),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
    )
    ranges: dict[str, list] = {}
    for batch in reader:
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            low, high = pc.min_max(column).values()
            ranges.setdefault(name, []).append((low, high))
    return ranges


class _FileContext:
    def __init__(self, path: str, params: dict) -> None:
        self.job_id = "bench"
        self.input = open(path, "rb")  # noqa: SIM115 - closed with the process
        self.input_size = os.path.getsize(path)
        self.input_name = os.path.basename(path)
        self.params = params

    def open_output(self, name: str, content_type: str = "application/octet-stream"):
        raise NotImplementedError

    def progress(self, bytes_read: int) -> None:
        pass


def ours(path: str) -> dict:
    from processors import get_processor

    processor = get_processor("CSV_PROFILE")
    return processor.run(_FileContext(path, processor.validate_params({})))


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def child(path: str) -> None:
    before = _status("VmRSS")
    result = ours(path)
    print(json.dumps({"before": before, "peak": _status("VmHWM"), "rows": result["rows"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", metavar="PATH")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mixed.csv")
        write_csv(path, args.mb * MB)
        size = os.path.getsize(path)
        ours(path)  # warm: imports and page cache for both
        result = ours(path)
        arrow_w, arrow_c = best(lambda: pyarrow_profile(path), args.repeat)
        ours_w, ours_c = best(lambda: ours(path), args.repeat)
        rss = json.loads(subprocess.run([sys.executable, __file__, "--child", path], check=True,
                                        capture_output=True, text=True).stdout)
    print(f"input: {size / MB:.0f} MB, {result['rows']} rows, {len(result['columns'])} columns: "
          + ", ".join(f"{c['name']}={c['type']}" for c in result["columns"]))
    print(f"{'':<34}{'wall MB/s':>10}{'cpu MB/s':>10}")
    print(f"{'CSV_PROFILE (ours)':<34}{size / MB / ours_w:>10.0f}{size / MB / ours_c:>10.0f}")
    print(f"{'pyarrow streaming profile':<34}{size / MB / arrow_w:>10.0f}{size / MB / arrow_c:>10.0f}")
    print(f"ratio ours/pyarrow: wall {arrow_w / ours_w:.2f}x, cpu {arrow_c / ours_c:.2f}x (goal >= 0.5x)")
    print(f"peak RSS of one run: {rss['peak'] / 2**20:.0f} MiB ({rss['before'] / 2**20:.0f} MiB before the run)")


if __name__ == "__main__":
    main()
