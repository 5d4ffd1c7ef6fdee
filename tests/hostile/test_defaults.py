"""Safe defaults: the debug page shows no credential, the embedded servers require theirs,
the admin password stays out of the console, TLS brings secure cookies and HSTS, and
compose gives the app a bucket-scoped MinIO user and the workers a memory limit."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import httpx
import psutil
import psycopg
import pytest
import redis
import yaml
from botocore.config import Config
from django.conf import settings
from django.test import Client
from django.urls import path
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests import stack_plugin
from tests.support.deadlines import within

ROOT = Path(__file__).resolve().parents[2]


# --- the debug page ------------------------------------------------------------------------

def raising_view(request):
    # Locals and a message of the kind a failing connection leaves on the page.
    broker = settings.CELERY_BROKER_URL
    db = settings.DATABASES["default"]
    ident = settings.S3_ACCESS_KEY_ID
    upstream = request.headers.get("X-Upstream", "")
    raise ConnectionError(f"cannot reach {broker} nor {settings.DATABASE_URL} as {ident}: {db} {upstream}")


urlpatterns = [path("boom/", raising_view)]


def session_secrets() -> dict[str, str]:
    """Every credential of the test session's servers, as the settings hold them."""
    db = settings.DATABASES["default"]
    found = {"DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL,
             "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "S3_ACCESS_KEY_ID": settings.S3_ACCESS_KEY_ID,
             "S3_SECRET_ACCESS_KEY": settings.S3_SECRET_ACCESS_KEY, "SECRET_KEY": settings.SECRET_KEY,
             "db password": db["PASSWORD"],
             "redis password": redis.connection.parse_url(settings.REDIS_URL)["password"]}
    assert all(found.values()), found  # the embedded servers have credentials at all
    return found


def debug_page(settings_fixture, accept: str, **headers) -> str:
    settings_fixture.DEBUG = True
    settings_fixture.ROOT_URLCONF = __name__
    response = Client(raise_request_exception=False).get("/boom/", HTTP_ACCEPT=accept, **headers)
    assert response.status_code == 500
    page = response.content.decode()
    assert "ConnectionError" in page and "Settings" in page  # Django's technical 500 page
    return page


@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_the_debug_page_shows_no_credential_of_any_server(settings, db, accept):
    page = debug_page(settings, accept, HTTP_X_UPSTREAM="postgres://ops:hunter2-upstream@10.0.0.9:5432/x")

    shown = {name: value for name, value in session_secrets().items() if value in page}
    assert shown == {}
    assert "hunter2-upstream" not in page  # a URL's password in request META
    assert f":{stack_plugin.STACK.redis.port}" not in page  # the internal URLs are hidden whole


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.from_regex(r"[a-z][a-z0-9]{2,10}", fullmatch=True),
       password=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&*+,;=",
                        min_size=8, max_size=40).filter(lambda p: "****" not in p),
       scheme=st.sampled_from(["postgres", "redis", "rediss", "amqp", "https", "s3"]))
def test_a_password_inside_any_url_is_never_on_the_debug_page(settings, db, user, password, scheme):
    url = f"{scheme}://{user}:{password}@internal.example:6543/x"
    settings.SOME_UPSTREAM = url  # a setting whose name does not look secret

    page = debug_page(settings, "text/plain", HTTP_X_UPSTREAM=url)

    assert password not in page


# --- the embedded servers ------------------------------------------------------------------

def embedded(name: str):
    server = getattr(stack_plugin.STACK, name, None)
    if server is None:
        pytest.skip(f"the environment names an external {name} server")
    return server


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def listening_addresses(pid: int) -> set[str]:
    """Where the server and its children listen; children that exit meanwhile (PostgreSQL's
    backends come and go) are skipped."""
    process = psutil.Process(pid)
    addresses = set()
    for member in [process, *process.children(recursive=True)]:
        try:
            connections = member.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        addresses |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
    return addresses


def test_embedded_postgresql_refuses_a_connection_without_the_password():
    server = embedded("postgres")
    for password in (None, "wrong-password"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres",
                            password=password, connect_timeout=5)
    # The Unix socket asks for it too.
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host=str(server.data_dir), port=server.port, user="postgres", dbname="postgres",
                        connect_timeout=5)

    with psycopg.connect(server.url, connect_timeout=5) as conn:
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
    assert private(server.password_file)
    assert listening_addresses(server.proc.pid) == {"127.0.0.1"}


def test_embedded_redis_refuses_commands_without_the_password():
    server = embedded("redis")
    anonymous = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5, protocol=2)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("anything")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=server.port, password="wrong-password", socket_timeout=5).ping()

    assert redis.Redis.from_url(server.url, socket_timeout=5).ping() is True
    # The password is nowhere on the command line, which every local user can read.
    assert server.password not in " ".join(psutil.Process(server.proc.pid).cmdline())
    assert private(server.data_dir / "password") and private(server.data_dir / "redis.conf")
    assert listening_addresses(server.proc.pid) == {"127.0.0.1"}


def test_embedded_seaweedfs_serves_objects_only_through_s3_with_its_keys():
    server = embedded("s3")
    client = boto3.client("s3", endpoint_url=server.url, aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key, region_name="us-east-1",
                          config=Config(retries={"max_attempts": 2}))
    bucket, key, body = "defaults-probe", "secret/object.bin", b"private bytes " * 200
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key=key, Body=body)
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == body  # S3 with the keys: served

    ports = {name: http for name, (http, _grpc) in server.ports.items()}
    with httpx.Client(timeout=10) as http:
        filer = f"http://127.0.0.1:{ports['filer']}"
        for url in (f"{filer}/buckets/{bucket}/{key}", f"{filer}/buckets/{bucket}/", f"{filer}/buckets/"):
            refused = http.get(url)
            assert refused.status_code == 401, (url, refused.text)
            assert body[:14] not in refused.content
        assert http.put(f"{filer}/buckets/{bucket}/planted.txt", content=b"x").status_code == 401

        # Every file id of every volume the object can be in: refused without a JWT, by the
        # volume server and by the master's redirect alike.
        volumes = http.get(f"http://127.0.0.1:{ports['volume']}/status").json()["Volumes"]
        ids = [v["Id"] for v in volumes if v["Collection"] == bucket]
        assert ids
        for volume_id in ids:
            for port in (ports["volume"], ports["master"]):
                refused = http.get(f"http://127.0.0.1:{port}/{volume_id},01637037d6", follow_redirects=True)
                assert refused.status_code == 401, refused.text
        # Anonymous S3 (no signature) is refused too.
        assert http.get(f"{server.url}/{bucket}/{key}").status_code == 403

    assert listening_addresses(server.proc.pid) == {"127.0.0.1"}
    assert all(private(server.data_dir / name) for name in ("security.toml", "jwt-keys.json", "s3.json"))


def grpc_handshake(port: int, tls_dir: Path, *, with_certificate: bool) -> bytes:
    """Opens TLS to a gRPC port and sends HTTP/2's preface: the server's SETTINGS come back."""
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    context.set_alpn_protocols(["h2"])
    if with_certificate:
        context.load_cert_chain(str(tls_dir / "node.crt"), str(tls_dir / "node.key"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
        return conn.recv(64)


def test_embedded_seaweedfs_grpc_ports_refuse_a_client_without_the_stack_certificate():
    server = embedded("s3")
    tls_dir = server.data_dir / "tls"
    for name, (_http, grpc) in server.ports.items():
        settings_frame = grpc_handshake(grpc, tls_dir, with_certificate=True)
        assert settings_frame[3] == 0x4, name  # an HTTP/2 SETTINGS frame: the certificate is accepted

        with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
            grpc_handshake(grpc, tls_dir, with_certificate=False)
        with socket.create_connection(("127.0.0.1", grpc), timeout=10) as plain:  # no TLS at all
            plain.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
            answer = plain.recv(64)
            assert answer[3:4] != b"\x04", name
    assert private(tls_dir / "node.key")
    assert not list(tls_dir.glob("ca.key*"))  # the authority's key was used once and not kept


def test_the_test_session_and_its_subprocesses_reach_the_servers_with_credentials():
    url = os.environ["DATABASE_URL"]
    assert psycopg.connection.conninfo_to_dict(url.replace("postgres://", "postgresql://"))["password"]
    from tests.conftest import subprocess_env

    env = subprocess_env()
    done = subprocess.run(
        [sys.executable, "-c", "import psycopg, os, redis; psycopg.connect(os.environ['DATABASE_URL']).close();"
                               "print(redis.Redis.from_url(os.environ['REDIS_URL']).ping())"],
        env=env, capture_output=True, text=True, timeout=within(20))
    assert done.stdout.strip() == "True", done.stderr


# --- make run: the admin password -----------------------------------------------------------

@pytest.mark.slow
def test_make_run_keeps_the_admin_password_in_a_private_file_and_out_of_its_output(tmp_path):
    from tests.devstack.test_launcher import Launcher

    launcher = Launcher(tmp_path)
    try:
        launcher.wait_ready(timeout=90)
        password_file = launcher.data / "admin-password"
        password = password_file.read_text().strip()

        assert private(password_file) and private(launcher.data / "runtime.env")
        written = [launcher.out, launcher.err, *(launcher.data / "logs").rglob("*")]
        assert [f for f in written if f.is_file() and password in f.read_text(errors="replace")] == []
        assert f"its password is in {password_file}" in launcher.console()

        # The kept password signs the admin in.
        with httpx.Client(base_url=launcher.url, timeout=30) as web:
            form = web.get("/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
            signed_in = web.post("/login/", data={"username": "admin", "password": password,
                                                  "csrfmiddlewaretoken": token})
            assert signed_in.status_code == 302, signed_in.text[:500]
            assert "sessionid" in web.cookies
    finally:
        launcher.kill()


# --- TLS settings ---------------------------------------------------------------------------

def deploy_check(**env: str) -> set[str]:
    """The security warnings of `manage.py check --deploy` under production-like settings."""
    base = {"PATH": os.environ["PATH"], "DJANGO_DEBUG": "0", "JOBPLATFORM_ENV_FILE": "",
            "DJANGO_SECRET_KEY": "x" * 20 + "-a-long-and-random-enough-key-for-the-check-" + "y" * 20,
            "DATABASE_URL": "postgres://app:pw@127.0.0.1:5432/app", "S3_ACCESS_KEY_ID": "app-key",
            "S3_SECRET_ACCESS_KEY": "app-secret", "DJANGO_SETTINGS_MODULE": "jobplatform.settings.web"}
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=within(60))
    return set(re.findall(r"security\.W\d+", done.stdout + done.stderr))


TLS_WARNINGS = {"security.W004", "security.W005", "security.W008", "security.W012", "security.W016"}


@pytest.mark.parametrize("tls_env", [{"DJANGO_TLS": "1"}, {"DJANGO_PROXY_SSL_HEADER": "X-Forwarded-Proto"}])
def test_with_tls_configured_the_deploy_check_has_no_cookie_hsts_or_redirect_warning(tls_env):
    assert deploy_check() & TLS_WARNINGS  # without TLS: HSTS and the redirect are off
    assert deploy_check(**tls_env) & TLS_WARNINGS == set()


def test_behind_a_tls_proxy_responses_carry_hsts_secure_cookies_and_redirect_plain_http(start_web_server):
    server = start_web_server(DJANGO_PROXY_SSL_HEADER="X-Forwarded-Proto")
    with server.client() as web:
        secure = web.get("/login/", headers={"X-Forwarded-Proto": "https"})
        plain = web.get("/login/")
        probe = web.get("/healthz")

    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "secure" in secure.headers["Set-Cookie"].lower()  # the CSRF cookie
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")
    assert probe.status_code == 200  # health probes come over plain HTTP from inside


# --- compose ---------------------------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())


def test_compose_gives_the_app_a_bucket_scoped_minio_user_never_the_root_one():
    services = compose()["services"]
    init = services["minio-init"]
    script = " ".join(init["command"])
    assert "mc admin user add" in script and "mc admin policy create" in script and "mc admin policy attach" in script

    for name in ("web", "worker", "beat", "sweeper", "migrate"):
        env = services[name]["environment"]
        assert "MINIO_ROOT" not in env["S3_ACCESS_KEY_ID"] + env["S3_SECRET_ACCESS_KEY"], name
        assert not any("MINIO_ROOT" in str(value) for value in env.values()), name

    policy = json.loads((ROOT / "compose" / "minio-app-policy.json").read_text())
    buckets = {"arn:aws:s3:::job-inputs", "arn:aws:s3:::job-outputs"}
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == buckets | {f"{b}/*" for b in buckets}
    assert all(statement["Effect"] == "Allow" and "*" not in "".join(statement["Action"])
               for statement in policy["Statement"])


def test_compose_workers_have_a_memory_limit_and_the_per_job_limit():
    worker = compose()["services"]["worker"]
    assert worker["deploy"]["resources"]["limits"]["memory"]
    assert "JOB_MEMORY_LIMIT_MB" in worker["environment"]


def test_compose_env_example_names_every_variable_compose_requires():
    text = (ROOT / "compose" / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = {line.split("=", 1)[0] for line in (ROOT / "compose" / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert required - example == set()
    assert {"S3_APP_ACCESS_KEY", "S3_APP_SECRET_KEY", "REDIS_PASSWORD"} <= required
