"""CPU of the web process per API request: Django's views behind a2wsgi on a fixed thread pool
(jobplatform/asgi.py, what is served) against Django's stock ASGI handler with a psycopg
pool (bench/stock/stock_asgi.py), two Uvicorn processes on the same servers in the same run.

    .venv/bin/python bench/web.py [--requests 2000] [--clients 4] [--rounds 2]

Each variant serves token-authenticated GET /api/v1/jobs/<id>/ and POST /api/v1/jobs/; the
rounds alternate between the variants. The CPU is the web process's user + system time
(psutil), divided by the requests it served.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import psutil
from harness import ROOT, KeepAliveClient, Platform, run_concurrently, table

from devstack.servers import die_with_parent, free_port, wait_for_port

VARIANTS = {
    # name: (ASGI application, settings module, extra uvicorn arguments)
    "a2wsgi WSGIMiddleware, fixed pool (served)": ("jobplatform.asgi:application", "jobplatform.settings.web", []),
    "Django ASGIHandler + psycopg pool": ("stock_asgi:application", "stock_settings",
                                          ["--app-dir", str(ROOT / "bench" / "stock")]),
}


class WebProcess:
    def __init__(self, base, name: str, app: str, settings: str, extra: list[str]) -> None:
        self.port = free_port()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings, "PYTHONPATH": str(ROOT)}
        with open(base / f"web-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", app, *extra, "--host", "127.0.0.1", "--port", str(self.port),
                 "--lifespan", "off", "--no-access-log", "--log-level", "warning"],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGKILL))
        wait_for_port(self.port, 60, self.proc, name)
        self.process = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def drive(port: int, n: int, clients: int, method: str, path: str, body: bytes, headers: dict, expect: int) -> None:
    def check(status: int, data: bytes) -> None:
        if status != expect:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")

    shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    connections = [KeepAliveClient(port) for _ in range(clients)]
    try:
        run_concurrently(connections, shares, method, path, body, headers, check)
    finally:
        for connection in connections:
            connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests of each kind per variant, in all")
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive API clients")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds the requests are split into")
    args = parser.parse_args()
    per_round = args.requests // args.rounds
    with Platform(workers=0, web=False, beat=False) as platform:
        _, token = platform.user_and_token()
        auth = {"Authorization": f"Token {token}"}
        webs = {name: WebProcess(platform.base, name, *spec) for name, spec in VARIANTS.items()}
        try:
            some_web = next(iter(webs.values()))
            client = KeepAliveClient(some_web.port)
            status, data = client.request("PUT", "/api/v1/uploads/bench.csv", b"a,b\n1,2\n",
                                          {**auth, "Content-Type": "text/csv"})
            assert status == 201, data
            create = json.dumps({"job_type": "CSV_ROW_COUNT", "input_object_key": json.loads(data)["object_key"]})
            status, data = client.request("POST", "/api/v1/jobs/", create.encode(),
                                          {**auth, "Content-Type": "application/json"})
            assert status == 201, data
            job_path = f"/api/v1/jobs/{json.loads(data)['id']}/"
            client.close()
            kinds = {
                "GET": ("GET", job_path, b"", auth, 200),
                "POST": ("POST", "/api/v1/jobs/", create.encode(), {**auth, "Content-Type": "application/json"}, 201),
            }
            cpu = {(name, kind): 0.0 for name in webs for kind in kinds}
            wall = dict.fromkeys(cpu, 0.0)
            for web in webs.values():  # warm-up: connections, first-request imports
                for request in kinds.values():
                    drive(web.port, 50, args.clients, *request)
            for _ in range(args.rounds):
                for name, web in webs.items():
                    for kind, request in kinds.items():
                        before, started = web.cpu(), time.perf_counter()
                        drive(web.port, per_round, args.clients, *request)
                        wall[name, kind] += time.perf_counter() - started
                        cpu[name, kind] += web.cpu() - before
        finally:
            for web in webs.values():
                web.stop()
    total = per_round * args.rounds
    served = next(iter(webs))
    rows = []
    for kind in kinds:
        for name in webs:
            ms = 1000 * cpu[name, kind] / total
            ratio = cpu[name, kind] / cpu[served, kind]
            rows.append((kind, name, f"{ms:.2f}", f"{total / wall[name, kind]:.0f}", f"{ratio:.2f}"))
    print()
    print(table(rows, ("request", "web process", "CPU ms/request", "requests/s", "CPU ratio to served")))
    print(f"\n{total} requests of each kind per variant in {args.rounds} alternating rounds, {args.clients} clients")


if __name__ == "__main__":
    main()
