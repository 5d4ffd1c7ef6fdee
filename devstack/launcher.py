"""`make run`: the whole platform on one machine.

Starts PostgreSQL, Redis and the S3 server (unless the environment names them), with
their data under .data/ kept between runs; migrates; creates the buckets and an admin
account; then runs Uvicorn (HTTP + WebSocket), a Celery worker and Celery beat. Ctrl-C
stops everything it started. A second `make run` while one runs says so and exits.
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
from pathlib import Path

from devstack.servers import Stack, die_with_parent

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
    path = DATA / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def write_runtime_env(env: dict) -> None:
    keys = ["DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY",
            "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "STORAGE_BACKEND"]
    lines = [f"{k}={env[k]}" for k in keys if env.get(k)]
    path = DATA / "runtime.env"
    header = "# written by `make run`; manage.py reads it so it talks to the same stack\n"
    path.write_text(header + "\n".join(lines) + "\n")
    path.chmod(0o600)


WEB_SETTINGS = {"DJANGO_SETTINGS_MODULE": "jobplatform.settings.web"}
WORKER_SETTINGS = {"DJANGO_SETTINGS_MODULE": "jobplatform.settings.worker"}


def manage(env: dict, *args: str) -> None:
    subprocess.run([PY, str(ROOT / "manage.py"), *args], env={**env, **WEB_SETTINGS}, check=True, cwd=ROOT)


def main() -> int:
    lock = acquire_lock()  # noqa: F841  (held until exit)
    port = int(os.environ.get("PORT", "8000"))
    host = os.environ.get("HOST", "127.0.0.1")
    stack = Stack(DATA / "services", durable=True)
    children: list[subprocess.Popen] = []
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        env = dict(os.environ)
        env.setdefault("DJANGO_DEBUG", "1")
        env.setdefault("DJANGO_SECRET_KEY", secret_key())
        env.update(stack.start(env, log=say))
        env["JOBPLATFORM_ENV_FILE"] = ""  # the children get everything from the environment
        write_runtime_env(env)
        say("migrating the database ...")
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "ensure_buckets")
        manage(env, "bootstrap_admin", "--password-file", str(DATA / "admin-password"))
        logs = DATA / "logs"
        logs.mkdir(exist_ok=True)
        commands = {  # name: (command, settings)
            "web": ([PY, "-m", "uvicorn", "jobplatform.asgi:application", "--host", host, "--port", str(port),
                     "--no-access-log", "--timeout-graceful-shutdown", "5"], WEB_SETTINGS),
            "worker": ([PY, "-m", "celery", "-A", "jobplatform", "worker", "-Q", "jobs,maintenance",
                        "--concurrency", os.environ.get("WORKER_CONCURRENCY", "2"), "--loglevel", "INFO",
                        "-n", "worker@%h"], WORKER_SETTINGS),
            "beat": ([PY, "-m", "celery", "-A", "jobplatform", "beat", "--loglevel", "INFO",
                      "-s", str(DATA / "celerybeat-schedule")], WORKER_SETTINGS),
        }
        for name, (cmd, settings) in commands.items():
            # Own session, so the terminal's Ctrl-C reaches only us and we stop them in order;
            # and a SIGTERM if we die without doing so.
            children.append(subprocess.Popen(cmd, env={**env, **settings}, cwd=ROOT, start_new_session=True,
                                             preexec_fn=die_with_parent(signal.SIGTERM)))
            say(f"started {name} (pid {children[-1].pid})")
        say("")
        say(f"web:    http://{host}:{port}/        (sign in: see above)")
        say(f"admin:  http://{host}:{port}/admin/")
        say(f"api:    http://{host}:{port}/api/v1/   docs: http://{host}:{port}/api/v1/docs/")
        say(f"health: http://{host}:{port}/readyz")
        say("Ctrl-C stops everything.")
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    say(f"a process exited (pid {child.pid}, code {child.returncode}); stopping everything")
                    stopping = True
            time.sleep(0.5)
    except subprocess.CalledProcessError as exc:
        say(f"set-up step failed: {' '.join(map(str, exc.cmd[1:]))}")
        return 1
    finally:
        say("stopping ...")
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        stack.stop()
        say("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
