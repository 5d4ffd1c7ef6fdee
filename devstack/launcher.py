"""`make run`: the whole platform on one machine, kept running.

Starts PostgreSQL, Redis and the S3 server (unless the environment names them), with
their data under .data/ kept between runs; migrates; creates the buckets and an admin
account; then runs Uvicorn (HTTP + WebSocket), a Celery worker and Celery beat. Any of
these that exits is restarted with backoff, as a child of this process. Ctrl-C stops
everything it started. A second `make run` while one runs says so and exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.servers import Stack, die_with_parent, read_or_make_secret, write_private

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("JOBPLATFORM_DATA_DIR", ROOT / ".data"))
PY = sys.executable


def say(msg: str) -> None:
    # The terminal or pipe may be gone (`make run | tee`, interrupted): keep shutting down.
    with contextlib.suppress(OSError):
        print(f"[jobplatform] {msg}", flush=True)


def acquire_lock() -> object:
    DATA.mkdir(parents=True, exist_ok=True)
    handle = open(DATA / "run.lock", "a+")  # noqa: SIM115  (held open: the lock lives as long as the process)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        say(f"already running (pid {pid}) with data in {DATA}. Stop it first (Ctrl-C in its terminal).")
        sys.exit(1)
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def secret_key() -> str:
    return read_or_make_secret(DATA / "secret_key", lambda: secrets.token_urlsafe(50))


def write_runtime_env(env: dict) -> None:
    keys = ["DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY",
            "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "STORAGE_BACKEND"]
    lines = [f"{k}={env[k]}" for k in keys if env.get(k)]
    path = DATA / "runtime.env"
    header = "# written by `make run`; manage.py reads it so it talks to the same stack\n"
    write_private(path, header + "\n".join(lines) + "\n")


WEB_SETTINGS = {"DJANGO_SETTINGS_MODULE": "jobplatform.settings.web"}
WORKER_SETTINGS = {"DJANGO_SETTINGS_MODULE": "jobplatform.settings.worker"}


def manage(env: dict, *args: str) -> None:
    # Own session: the terminal's Ctrl-C reaches only us; on Shutdown, subprocess.run kills it.
    subprocess.run([PY, str(ROOT / "manage.py"), *args], env={**env, **WEB_SETTINGS}, check=True, cwd=ROOT,
                   start_new_session=True)


def bootstrap_admin(env: dict) -> None:
    """Creates the admin account on the first run. Its password is shown once, on the
    terminal that started `make run` (even when the output goes to a file or a pipe), and
    is kept in .data/admin-password, mode 0600; it never reaches the console output."""
    path = DATA / "admin-password"
    existed = path.exists()
    # The command's output names the password: kept from the console. umask: the file it
    # writes is never readable by others, not even before its chmod.
    subprocess.run([PY, str(ROOT / "manage.py"), "bootstrap_admin", "--password-file", str(path)],
                   env={**env, **WEB_SETTINGS}, check=True, cwd=ROOT, start_new_session=True,
                   capture_output=True, umask=0o077)
    if existed or not path.exists():
        where = (f"the password is in {path}" if path.exists()
                 else "reset its password with manage.py changepassword admin")
        say(f"sign in as 'admin': {where}")
        return
    say(f"created the staff account 'admin'; its password is in {path} (mode 0600)")
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(f"[jobplatform] admin password (shown once): {path.read_text().strip()}\n")
    except OSError:
        pass  # no terminal: the file is the only copy


class Shutdown(Exception):
    """Ctrl-C or SIGTERM: stop everything started so far."""


def on_stop_signal(*_) -> None:
    # One shutdown: a second Ctrl-C must not interrupt the stopping of the first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Shutdown


BACKOFF_FIRST = 1.0  # seconds before the first restart of a process that exited
BACKOFF_MAX = 30.0
STABLE_SECONDS = 60.0  # a process that ran this long starts over at the first backoff step
STOP_TIMEOUT = 30.0  # for web, worker and beat to stop after SIGTERM (a warm worker shutdown finishes its jobs)


def describe_exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


@dataclass
class Supervised:
    """A process `make run` keeps running: restarted with backoff whenever it exits."""

    name: str
    start: Callable[[], subprocess.Popen]  # starts it (waiting until it serves, for a server)
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None

    def launch(self) -> None:
        self.proc = self.start()
        self.started_at = time.monotonic()
        self.restart_at = None

    def schedule_restart(self, why: str) -> None:
        now = time.monotonic()
        if now - self.started_at >= STABLE_SECONDS:
            self.failures = 0
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** self.failures)
        self.failures += 1
        self.restart_at = now + delay
        say(f"{self.name} {why}; restarting it in {delay:.0f}s")

    def check(self) -> None:
        """Notices an exit (and schedules the restart) or performs a restart that is due."""
        if self.restart_at is None:
            code = self.proc.poll()
            if code is None:
                return
            # Whatever it started in its process group (pool children) goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.schedule_restart(describe_exit(code))
        elif time.monotonic() >= self.restart_at:
            try:
                self.launch()
            except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
                self.schedule_restart(f"did not start ({exc})")
                return
            say(f"restarted {self.name} (pid {self.proc.pid})")


def supervise_server(name: str, server) -> Supervised:
    """An embedded server, already started by the Stack; a restart reuses its port and data."""

    def start() -> subprocess.Popen:
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        return server.proc

    return Supervised(name, start, proc=server.proc, started_at=time.monotonic())


# Stopped in this order, each group after the one before has exited: the web first (no new
# jobs), then what schedules and sweeps, then the worker, whose warm shutdown finishes the
# jobs it runs while the database, Redis and S3 are still up.
STOP_ORDER = (("web",), ("beat", "sweeper"), ("worker",))


def stop_all(processes: list[Supervised]) -> None:
    by_name = {p.name: p for p in processes}
    later = [p.name for p in processes if not any(p.name in group for group in STOP_ORDER)]
    for group in (*STOP_ORDER, tuple(later)):
        stop_group([by_name[name].proc for name in group if name in by_name])


def stop_group(procs: list[subprocess.Popen | None]) -> None:
    running = [proc for proc in procs if proc is not None and proc.poll() is None]
    for proc in running:
        # The main process only: a Celery worker stops its own pool. A SIGTERM to the whole
        # group reaches the pool processes too, and one that exits under a live main process
        # is reported as a lost worker (WorkerLostError).
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in running:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"pid {proc.pid} did not stop within {STOP_TIMEOUT:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for proc in running:
        # Stragglers in its process group (a pool child that outlived its parent).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    lock = acquire_lock()  # noqa: F841  (held until exit)
    port = int(os.environ.get("PORT", "8000"))
    host = os.environ.get("HOST", "127.0.0.1")
    stack = Stack(DATA / "services", durable=True)
    children: list[Supervised] = []
    signal.signal(signal.SIGINT, on_stop_signal)
    signal.signal(signal.SIGTERM, on_stop_signal)
    try:
        env = dict(os.environ)
        env.setdefault("DJANGO_DEBUG", "1")
        env.setdefault("DJANGO_SECRET_KEY", secret_key())
        # The console shows job events, warnings and errors; LOG_LEVEL=DEBUG adds beat's
        # schedule and the worker's line per task (a sweep every second).
        debug = env.get("LOG_LEVEL", "").upper() == "DEBUG"
        env.setdefault("MAINTENANCE_LOG_LEVEL", "DEBUG" if debug else "WARNING")
        env.update(stack.start(env, log=say))
        servers = [supervise_server(name, server)
                   for name, server in (("PostgreSQL", stack.postgres), ("Redis", stack.redis),
                                        ("SeaweedFS", stack.s3)) if server is not None]
        env["JOBPLATFORM_ENV_FILE"] = ""  # the children get everything from the environment
        write_runtime_env(env)
        say("migrating the database ...")
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "ensure_buckets")
        bootstrap_admin(env)
        logs = DATA / "logs"
        logs.mkdir(exist_ok=True)
        commands = {  # name: (command, settings)
            # Uvicorn's own start and stop lines are left out: the URLs are printed below.
            "web": ([PY, "-m", "uvicorn", "jobplatform.asgi:application", "--host", host, "--port", str(port),
                     "--no-access-log", "--timeout-graceful-shutdown", "5",
                     "--log-level", "debug" if debug else "warning"], WEB_SETTINGS),
            # --quiet: no start-up banners; the log lines follow LOG_LEVEL.
            "worker": ([PY, "-m", "celery", "-A", "jobplatform", "--quiet", "worker", "-Q", "jobs,maintenance",
                        "--concurrency", os.environ.get("WORKER_CONCURRENCY", "2"),
                        "--loglevel", "DEBUG" if debug else "INFO", "-n", "worker@%h"], WORKER_SETTINGS),
            "beat": ([PY, "-m", "celery", "-A", "jobplatform", "--quiet", "beat",
                      "--loglevel", "DEBUG" if debug else "INFO", "-s", str(DATA / "celerybeat-schedule")],
                     WORKER_SETTINGS),
            # Recovery in a process of its own: it goes on while beat is down or the worker's
            # pool is busy with long jobs.
            "sweeper": ([PY, str(ROOT / "manage.py"), "sweep", "--loop"], WORKER_SETTINGS),
        }
        for name, (cmd, settings) in commands.items():
            # Own session, so the terminal's Ctrl-C reaches only us and we stop them in order;
            # and a SIGTERM if we die without doing so.
            def start(cmd=cmd, settings=settings) -> subprocess.Popen:
                return subprocess.Popen(cmd, env={**env, **settings}, cwd=ROOT, start_new_session=True,
                                        preexec_fn=die_with_parent(signal.SIGTERM))

            children.append(Supervised(name, start))
            children[-1].launch()
            say(f"started {name} (pid {children[-1].proc.pid})")
        say("")
        say(f"web:    http://{host}:{port}/        (sign in as 'admin', password in {DATA / 'admin-password'})")
        say(f"admin:  http://{host}:{port}/admin/")
        say(f"api:    http://{host}:{port}/api/v1/   docs: http://{host}:{port}/api/v1/docs/")
        say(f"health: http://{host}:{port}/readyz")
        say("job events, warnings and errors follow (LOG_LEVEL=DEBUG for everything); Ctrl-C stops everything.")
        while True:
            for process in servers + children:
                process.check()
            time.sleep(0.5)
    except Shutdown:
        return 0
    except subprocess.CalledProcessError as exc:
        say(f"set-up step failed: {' '.join(map(str, exc.cmd[1:]))}")
        return 1
    except RuntimeError as exc:  # a server that does not start (its log is in the data directory)
        say(f"could not start: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping ...")
        stop_all(children)
        stack.stop()
        say("stopped.")


if __name__ == "__main__":
    sys.exit(main())
