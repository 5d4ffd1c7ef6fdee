"""Settings every process shares: every connection and limit comes from the environment,
read here only. Each process type names its own module, which starts from this one:
jobplatform.settings.web (Uvicorn, manage.py) and jobplatform.settings.worker (Celery).

Development defaults let `make run` and the tests work with nothing set. With DEBUG off,
the process refuses to start without a real secret key or with the default S3 keys.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# `make run` writes how to reach its embedded services here, so that `manage.py ...` in a
# second terminal talks to the same stack. Values already in the environment win.
_env_file = os.environ.get("JOBPLATFORM_ENV_FILE", str(BASE_DIR / ".data" / "runtime.env"))
if _env_file and Path(_env_file).is_file():
    load_dotenv(_env_file, override=False)


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


DEBUG = env_bool("DJANGO_DEBUG", False)

DEV_SECRET_KEY = "dev-only-insecure-secret-key"  # noqa: S105  (refused below unless DEBUG)
SECRET_KEY = env("DJANGO_SECRET_KEY") or (DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY == DEV_SECRET_KEY):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set. With DJANGO_DEBUG off a real secret key is required "
        "(for development, set DJANGO_DEBUG=1 or use `make run`)."
    )

ALLOWED_HOSTS = [h.strip() for h in env("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")
                 if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",  # index expressions with an operator class (jobs' trigram index)
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc assets served locally, no CDN
    "django_celery_results",
    "axes",
    "storage",
    "jobs",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Sign-in posts hashing at once (LOGIN_MAX_CONCURRENT); then the lock-out's 429 page,
    # last as django-axes requires.
    "jobs.web.logins.SignInConcurrencyMiddleware",
    "axes.middleware.AxesMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ------------------------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. `make run` starts an embedded PostgreSQL and sets it; "
        "otherwise point it at a server, e.g. postgres://user:pass@127.0.0.1:5432/jobplatform"
    )
# Persistent per-thread connections, checked before reuse so that one that died with a
# PostgreSQL restart is replaced instead of failing a request or a task.
DATABASES = {"default": dj_database_url.parse(
    DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True)}
# Parameters bound by the server, not quoted into the SQL text by psycopg (Django's default
# for psycopg 3): no Python-side quoting of every value, and psycopg prepares a statement a
# connection runs five times. Set DB_SERVER_SIDE_BINDING=0 behind PgBouncer in
# transaction-pooling mode, which cannot keep prepared statements.
if env_bool("DB_SERVER_SIDE_BINDING", True):
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
# Deadlines on every database call (libpq parameters, passed through by psycopg):
# - a connection attempt gives up after DB_CONNECT_TIMEOUT seconds (psycopg's minimum is 2);
# - the server cancels a statement after DB_STATEMENT_TIMEOUT seconds and a lock wait after
#   DB_LOCK_TIMEOUT (0 turns either off; PgBouncer rejects the `options` startup parameter
#   unless it is in its ignore_startup_parameters, so set both to 0 behind it);
# - TCP keepalives and tcp_user_timeout drop a connection to a host that vanished (about
#   DB_KEEPALIVE_SECONDS x 2.5), instead of waiting for the kernel's two hours.
# A server that hangs while its host still answers TCP (a paused process) is caught on this
# side by jobplatform.dbdeadline, after DB_HUNG_CHECK_SECONDS.
DB_CONNECT_TIMEOUT = env_int("DB_CONNECT_TIMEOUT", 2)
DB_STATEMENT_TIMEOUT = env_int("DB_STATEMENT_TIMEOUT", 30)
DB_LOCK_TIMEOUT = env_int("DB_LOCK_TIMEOUT", 10)
DB_KEEPALIVE_SECONDS = env_int("DB_KEEPALIVE_SECONDS", 10)
DB_HUNG_CHECK_SECONDS = float(env("DB_HUNG_CHECK_SECONDS", "1"))
_db_server_options = " ".join(
    f"-c {name}={seconds * 1000}" for name, seconds in
    (("statement_timeout", DB_STATEMENT_TIMEOUT), ("lock_timeout", DB_LOCK_TIMEOUT)) if seconds > 0)
DATABASES["default"].setdefault("OPTIONS", {}).update({
    "connect_timeout": DB_CONNECT_TIMEOUT,
    "keepalives": 1,
    "keepalives_idle": DB_KEEPALIVE_SECONDS,
    "keepalives_interval": max(1, DB_KEEPALIVE_SECONDS // 2),
    "keepalives_count": 3,
    "tcp_user_timeout": DB_KEEPALIVE_SECONDS * 2500,  # milliseconds
    **({"options": _db_server_options} if _db_server_options else {}),
})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: broker, channel layer, cache ---------------------------------------------------
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")

# django-redis: Django builds a new cache object for every request served from a thread pool,
# and its own Redis cache keeps the connection pool on that object; django-redis keeps one
# connection pool per process, shared by every request.
# Every Redis client has deadlines: REDIS_CONNECT_TIMEOUT to connect, REDIS_SOCKET_TIMEOUT
# for an answer, so a paused or unreachable Redis fails a call in seconds, never hangs it.
REDIS_CONNECT_TIMEOUT = env_int("REDIS_CONNECT_TIMEOUT", 2)
REDIS_SOCKET_TIMEOUT = env_int("REDIS_SOCKET_TIMEOUT", 3)
CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL, "OPTIONS": {
    "SOCKET_CONNECT_TIMEOUT": REDIS_CONNECT_TIMEOUT, "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT}}}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                              "socket_timeout": REDIS_SOCKET_TIMEOUT, "socket_keepalive": True}]},
    }
}

# --- object storage ------------------------------------------------------------------------
STORAGE_BACKEND = env("STORAGE_BACKEND", "s3")  # "s3" or "local"
if STORAGE_BACKEND not in ("s3", "local"):
    raise ImproperlyConfigured(f"STORAGE_BACKEND must be 's3' or 'local', got {STORAGE_BACKEND!r}")
S3_ENDPOINT_URL = env("S3_ENDPOINT_URL") or None  # None: AWS S3
# Presigned URLs must name a host the browser can reach; in compose that is not the
# internal service name.
S3_PUBLIC_ENDPOINT_URL = env("S3_PUBLIC_ENDPOINT_URL") or S3_ENDPOINT_URL
DEFAULT_S3_ACCESS_KEY = "jobplatform-dev"
S3_ACCESS_KEY_ID = env("S3_ACCESS_KEY_ID", DEFAULT_S3_ACCESS_KEY)
S3_SECRET_ACCESS_KEY = env("S3_SECRET_ACCESS_KEY", "jobplatform-dev-secret")
S3_REGION = env("S3_REGION", "us-east-1")
S3_ADDRESSING_STYLE = env("S3_ADDRESSING_STYLE", "path" if S3_ENDPOINT_URL else "auto")
S3_INPUT_BUCKET = env("S3_INPUT_BUCKET", "job-inputs")
S3_OUTPUT_BUCKET = env("S3_OUTPUT_BUCKET", "job-outputs")
S3_KEY_PREFIX = (env("S3_KEY_PREFIX", "") or "").strip("/")
# Deadlines on every S3 request (obstore and boto3 alike): S3_CONNECT_TIMEOUT to connect,
# S3_READ_TIMEOUT for each read of an answer (reset by every chunk, so a long streamed GET is
# fine), S3_MAX_ATTEMPTS tries in all, no retry begun after S3_RETRY_TIMEOUT. One call to a
# hung S3 therefore fails within about S3_MAX_ATTEMPTS x (connect + read) (docs/states.md).
S3_MAX_ATTEMPTS = env_int("S3_MAX_ATTEMPTS", 3)
S3_CONNECT_TIMEOUT = env_int("S3_CONNECT_TIMEOUT", 5)
S3_READ_TIMEOUT = env_int("S3_READ_TIMEOUT", 15)
S3_RETRY_TIMEOUT = env_int("S3_RETRY_TIMEOUT", 60)
# Metadata requests (a HEAD: job creation's check of its input) end each try after this many
# seconds and begin no retry after two, so an API call meets a hung S3 for about 5 s at most.
S3_HEAD_TIMEOUT = env_int("S3_HEAD_TIMEOUT", 2)
LOCAL_STORAGE_ROOT = Path(env("LOCAL_STORAGE_ROOT", str(BASE_DIR / ".data" / "objects")))
if not DEBUG and STORAGE_BACKEND == "s3" and S3_ACCESS_KEY_ID == DEFAULT_S3_ACCESS_KEY:
    raise ImproperlyConfigured(
        "S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY are the development defaults. With DJANGO_DEBUG off "
        "set real credentials (or STORAGE_BACKEND=local)."
    )

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Streaming upload: parts of 8..64 MiB, a bounded number in flight.
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 5 * 1024**3)
UPLOAD_PART_SIZE = env_int("UPLOAD_PART_SIZE", 8 * 1024**2)
UPLOAD_MAX_PARTS_IN_FLIGHT = env_int("UPLOAD_MAX_PARTS_IN_FLIGHT", 2)
# The web process's shutdown waits this long for interrupted streamed uploads to abort.
UPLOAD_SHUTDOWN_WAIT_SECONDS = env_int("UPLOAD_SHUTDOWN_WAIT_SECONDS", 10)
# Multipart uploads (streamed or direct) open longer than this are aborted by the clean-up.
UPLOAD_ABANDONED_SECONDS = env_int("UPLOAD_ABANDONED_SECONDS", 24 * 3600)
# Parts per ListParts call when a resumable upload lists its parts (S3 answers at most 1,000).
UPLOAD_LIST_PARTS_PAGE_SIZE = env_int("UPLOAD_LIST_PARTS_PAGE_SIZE", 1000)

# --- upload admission ------------------------------------------------------------------------
# A streamed upload whose client sends nothing for this long is aborted (408 upload_idle).
UPLOAD_IDLE_TIMEOUT_SECONDS = float(env("UPLOAD_IDLE_TIMEOUT_SECONDS", "30"))
# Streamed uploads under way at once, per user and in all, counted in each web process
# (with N processes the overall ceiling is N times this); beyond them 429 too_many_uploads.
UPLOAD_MAX_CONCURRENT_PER_USER = env_int("UPLOAD_MAX_CONCURRENT_PER_USER", 4)
UPLOAD_MAX_CONCURRENT = env_int("UPLOAD_MAX_CONCURRENT", 64)
PRESIGNED_URL_MAX_EXPIRY = 86400
PRESIGNED_URL_DEFAULT_EXPIRY = 3600

# --- jobs ----------------------------------------------------------------------------------
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 5)
JOB_RETRY_BACKOFF_BASE = float(env("JOB_RETRY_BACKOFF_BASE", "2"))  # seconds, doubled per attempt
JOB_RETRY_BACKOFF_MAX = float(env("JOB_RETRY_BACKOFF_MAX", "300"))
# A PROCESSING job without a heartbeat for this long is re-queued. Lease 6 s, a heartbeat
# every 2 s (three per lease) and a sweep every second re-queue a SIGKILLed worker's job
# within 7 s (docs/states.md, bench/recovery.py).
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 6)
JOB_HEARTBEAT_SECONDS = env_int("JOB_HEARTBEAT_SECONDS", 2)
JOB_STUCK_SECONDS = env_int("JOB_STUCK_SECONDS", 60)  # CREATED/QUEUED for this long: its message is re-published
JOB_MAX_WORKER_DEATHS = env_int("JOB_MAX_WORKER_DEATHS", 3)  # lease expiries before a job is a poison pill
# A PROCESSING job whose progress has not moved for this long is stalled: shown so, then re-queued.
JOB_STALL_SECONDS = env_int("JOB_STALL_SECONDS", 300)
SWEEP_INTERVAL_SECONDS = env_int("SWEEP_INTERVAL_SECONDS", 1)  # `manage.py sweep --loop` and beat's sweep

# --- retention (`manage.py prune`, and beat's hourly jobs.prune; docs/operations.md#retention) ---
# Days kept after a job finished (COMPLETED, FAILED, CANCELLED), with its events, objects and
# task results; 0 keeps them forever.
JOB_RETENTION_DAYS = env_int("JOB_RETENTION_DAYS", 30)
# Days a DEAD job (replayable) and a dead letter are kept after the death; 0 keeps them forever.
DEAD_LETTER_RETENTION_DAYS = env_int("DEAD_LETTER_RETENTION_DAYS", 90)
# Days django-celery-results' task results are kept after the task finished; 0 keeps them forever.
TASK_RESULT_RETENTION_DAYS = env_int("TASK_RESULT_RETENTION_DAYS", 7)
# Rows per prune transaction: each holds its rows' locks for one batch only.
PRUNE_BATCH_SIZE = env_int("PRUNE_BATCH_SIZE", 1000)
# One periodic prune stops after this many seconds; the next goes on where it stopped.
PRUNE_MAX_SECONDS = env_int("PRUNE_MAX_SECONDS", 600)

# Warm shutdown (SIGTERM to a worker): running jobs may finish for this long, then they are
# handed back (QUEUED at once, not a worker death); a pool process still busy this much
# later is killed. Keep the sum under the platform's kill timeout (Kubernetes: 30 s).
JOB_SHUTDOWN_GRACE_SECONDS = float(env("JOB_SHUTDOWN_GRACE_SECONDS", "20"))
JOB_SHUTDOWN_HANDBACK_SECONDS = float(env("JOB_SHUTDOWN_HANDBACK_SECONDS", "5"))
# A run message that met the database away is retried after 1, 2, 4 ... s, up to this.
JOB_DB_RETRY_BACKOFF_MAX = float(env("JOB_DB_RETRY_BACKOFF_MAX", "30"))
JOB_PROGRESS_MIN_INTERVAL = float(env("JOB_PROGRESS_MIN_INTERVAL", "0.2"))  # at most 5 progress events a second

# Extra processor modules to import (and so register) at start-up: a deployment's own job
# types, or the tests' diagnostic ones. Comma-separated dotted module paths.
PROCESSOR_MODULES = [m.strip() for m in env("PROCESSOR_MODULES", "").split(",") if m.strip()]

# --- webhooks (webhooks/, jobplatform/destinations.py; docs/api.md#webhooks) ----------------
# Networks outside the public internet that deliveries may still reach (comma-separated CIDRs,
# e.g. "10.0.0.0/8" for receivers on the same private network); every other loopback, private,
# link-local, multicast or reserved address is refused when a URL is saved and at delivery.
WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = [c.strip() for c in env("WEBHOOK_ALLOW_PRIVATE_DESTINATIONS", "").split(",")
                                      if c.strip()]
try:
    [ipaddress.ip_network(cidr, strict=False) for cidr in WEBHOOK_ALLOW_PRIVATE_DESTINATIONS]
except ValueError as exc:
    raise ImproperlyConfigured(f"WEBHOOK_ALLOW_PRIVATE_DESTINATIONS: {exc}") from None
# One attempt: connect, send and the first response bytes each within this many seconds.
WEBHOOK_TIMEOUT_SECONDS = float(env("WEBHOOK_TIMEOUT_SECONDS", "5"))
# Attempts before a delivery is FAILED; the waits between them double from the base, capped,
# with jitter (10 s, 20 s, 40 s ... 1 h: at most about 3.4 h in all with the defaults).
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 12)
WEBHOOK_RETRY_BACKOFF_BASE = float(env("WEBHOOK_RETRY_BACKOFF_BASE", "10"))
WEBHOOK_RETRY_BACKOFF_MAX = float(env("WEBHOOK_RETRY_BACKOFF_MAX", "3600"))
# After a secret rotation the previous secret still signs (beside the new) for this long.
WEBHOOK_SECRET_GRACE_SECONDS = env_int("WEBHOOK_SECRET_GRACE_SECONDS", 24 * 3600)
# The bytes of a receiver's answer kept with each attempt; the rest is not read.
WEBHOOK_RESPONSE_SNIPPET_BYTES = env_int("WEBHOOK_RESPONSE_SNIPPET_BYTES", 512)
WEBHOOK_MAX_ENDPOINTS_PER_USER = env_int("WEBHOOK_MAX_ENDPOINTS_PER_USER", 10)
# A pending delivery whose next attempt is this overdue (its message lost with a broker
# restart, or its worker killed mid-attempt) is published again by the resume task.
WEBHOOK_RESUME_AFTER_SECONDS = env_int("WEBHOOK_RESUME_AFTER_SECONDS", 120)
# Deliveries share the maintenance queue every worker consumes; name another queue (and
# start workers on it) to keep slow receivers away from the clean-ups.
WEBHOOK_QUEUE = env("WEBHOOK_QUEUE", "maintenance")

# --- processor limits ----------------------------------------------------------------------
# Every job's processor runs in a child process of its pool process (jobs.isolation) held
# to these; a processor may set lower ones. Going over one fails the job: resource_limit.
JOB_CPU_LIMIT_SECONDS = env_int("JOB_CPU_LIMIT_SECONDS", 900)
JOB_MEMORY_LIMIT_MB = env_int("JOB_MEMORY_LIMIT_MB", 1024)
# A child left above this RSS after a job is replaced: a processor's heap does not shrink.
JOB_SANDBOX_RECYCLE_RSS_MB = env_int("JOB_SANDBOX_RECYCLE_RSS_MB", 200)
# A running job's cancel request is polled this often when no progress row has just said so.
JOB_CANCEL_CHECK_SECONDS = float(env("JOB_CANCEL_CHECK_SECONDS", "0.5"))
# The result the job row keeps: strings cut at this many characters, and a marker instead
# of a result over this many bytes of JSON (result.json keeps the whole).
JOB_RESULT_MAX_STRING_CHARS = env_int("JOB_RESULT_MAX_STRING_CHARS", 4096)
JOB_RESULT_MAX_BYTES = env_int("JOB_RESULT_MAX_BYTES", 256 * 1024)

# --- PDF_EXTRACT_TEXT page budget -----------------------------------------------------------
# A page over either fails the job with page_over_budget; the job's CPU limit still bounds
# a single PDFium call, which cannot be interrupted.
PDF_PAGE_CPU_SECONDS = float(env("PDF_PAGE_CPU_SECONDS", "10"))
PDF_PAGE_MAX_CHARS = env_int("PDF_PAGE_MAX_CHARS", 1_000_000)

# --- celery --------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
# No backend_cleanup from beat: it deletes every expired result in one statement. jobs.prune
# expires them in batches after TASK_RESULT_RETENTION_DAYS instead.
CELERY_RESULT_EXPIRES = None
# One result-backend object per process, not per thread: the Django database backend keeps
# no per-thread state of its own (its queries use Django's per-thread connections), and a
# thread-local one would be rebuilt in every web thread that publishes a job.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_DEFAULT_QUEUE = "jobs"
CELERY_TASK_ROUTES = {
    "jobs.run_job": {"queue": "jobs"},
    "jobs.sweep": {"queue": "maintenance"},
    "jobs.abort_abandoned_uploads": {"queue": "maintenance"},
    "jobs.prune": {"queue": "maintenance"},
    # Parked messages of dead jobs; no worker consumes this queue unless asked to.
    "jobs.dead_letter": {"queue": "dead-letter"},
    "webhooks.deliver": {"queue": WEBHOOK_QUEUE},
    "webhooks.resume": {"queue": WEBHOOK_QUEUE},
}
# The job row already says PROCESSING; a STARTED TaskResult row would be one more write per job.
CELERY_TASK_TRACK_STARTED = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The lease sweeper, not Redis' visibility timeout, recovers jobs from dead workers; keep
# the timeout above the longest hard time limit so Redis does not redeliver live work.
# The socket deadlines make a publish to a paused Redis fail in seconds instead of blocking
# the web thread that created the job (the sweeper publishes it later).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_keepalive": True,
}
# RabbitMQ (CELERY_BROKER_URL=amqp://...): every queue is a quorum queue (replicated, durable).
# Quorum queues have no global QoS, so Celery keeps the prefetch static (worker_detect_quorum_queues);
# a retry's countdown goes through Celery's native delayed delivery, which needs topic exchanges.
# Publisher confirms: a publish returns once the broker holds the message; an unreachable
# broker fails a publish within the connect timeout (the sweeper publishes it later).
BROKER_IS_AMQP = CELERY_BROKER_URL.split("://", 1)[0] in {"amqp", "amqps", "pyamqp"}
if BROKER_IS_AMQP:
    from kombu import Exchange, Queue

    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    CELERY_TASK_QUEUES = [Queue(name, Exchange(name, type="topic"), routing_key=name,
                                queue_arguments={"x-queue-type": "quorum"})
                          for name in ("jobs", "maintenance", "dead-letter")]
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_CONNECT_TIMEOUT
CELERY_TIMEZONE = "UTC"

# --- web -----------------------------------------------------------------------------------
# /readyz answers within this many seconds; a check that has not returned by then is "hung".
READYZ_TIMEOUT = float(env("READYZ_TIMEOUT", "1.5"))
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# For test runs only (tests/stack_plugin.py sets it, and the workers and servers the tests
# start inherit it): Django's PBKDF2 iterations make every password hash slow on purpose,
# and the suite creates hundreds of users. Never set it for a real deployment.
if env_bool("DJANGO_INSECURE_FAST_PASSWORD_HASHING", False):
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# --- sign-in throttling (django-axes) ---------------------------------------------------------
# Failed sign-ins are counted per client IP and, separately, per username, in the default
# cache (Redis: one atomic increment a failure, no database write, expiry = the cool-off).
# LOGIN_FAILURE_LIMIT failures lock that IP or that username out; each further try while
# locked out doubles the cool-off from LOGIN_COOLOFF_SECONDS up to LOGIN_COOLOFF_MAX_SECONDS
# (jobs/web/logins.py). The check runs in the first authentication backend, before any
# password is hashed, for /login/ and /admin/login/ alike; a success clears the counts.
# The IP is REMOTE_ADDR, which Uvicorn sets from X-Forwarded-For only for a peer listed in
# FORWARDED_ALLOW_IPS (its default: loopback): behind a proxy, set that to the proxy's address.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("LOGIN_LOCKOUT_ENABLED", True)
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
LOGIN_COOLOFF_SECONDS = float(env("LOGIN_COOLOFF_SECONDS", "60"))
LOGIN_COOLOFF_MAX_SECONDS = float(env("LOGIN_COOLOFF_MAX_SECONDS", "3600"))
AXES_COOLOFF_TIME = "jobs.web.logins.cool_off"
AXES_USERNAME_CALLABLE = "jobs.web.logins.username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "jobs.web.logins.locked_out"
AXES_DISABLE_ACCESS_LOG = True  # no row per successful sign-in
AXES_ENABLE_ADMIN = False  # its admin pages list database records, which the cache handler never writes
# Pinned for the day django-ipware is installed: then axes would read client-set headers first.
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
# The lock-out counts a failure after its hash; this caps how many sign-in posts hash at once
# in one web process (from any addresses), so a burst cannot take every thread and core.
LOGIN_MAX_CONCURRENT = env_int("LOGIN_MAX_CONCURRENT", 2)
LOGIN_PATHS = ("/login/", "/admin/login/")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "job-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".data" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # no collectstatic step needed in development

# Request bodies are streamed by the upload consumer; everything else is small.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- request body admission (jobplatform/admission.py) ---------------------------------------
# Bodies for Django's views are refused with 413 before any byte is read once they pass the
# limit of their path: the API's JSON limit under /api/; a form's file and its other fields
# (FILE_UPLOAD_MAX_MEMORY_SIZE + DATA_UPLOAD_MAX_MEMORY_SIZE) on pages; little on sign-in pages.
BODY_LIMIT_API_BYTES = env_int("BODY_LIMIT_API_BYTES", DATA_UPLOAD_MAX_MEMORY_SIZE)
BODY_LIMIT_PAGE_BYTES = env_int("BODY_LIMIT_PAGE_BYTES", FILE_UPLOAD_MAX_MEMORY_SIZE + DATA_UPLOAD_MAX_MEMORY_SIZE)
BODY_LIMIT_LOGIN_BYTES = env_int("BODY_LIMIT_LOGIN_BYTES", 64 * 1024)
BODY_LIMIT_LOGIN_PATHS = ("/login/", "/admin/login/")
# A chunked body is read before Django sees it; one that stalls this long is answered 408.
BODY_IDLE_TIMEOUT_SECONDS = float(env("BODY_IDLE_TIMEOUT_SECONDS", "30"))

REST_FRAMEWORK = {
    # Token first: an anonymous request then gets 401 with WWW-Authenticate, not a bare 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "jobs.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "jobs.api.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "job_create": env("THROTTLE_JOB_CREATE", "120/min"),
        "upload": env("THROTTLE_UPLOAD", "60/min"),
        # Cancel, retry and dead-letter replay (API and pages).
        "job_action": env("THROTTLE_JOB_ACTION", "120/min"),
        # A direct upload's sign-parts, complete and abort calls.
        "upload_part": env("THROTTLE_UPLOAD_PART", "600/min"),
        # Webhook endpoint writes, secret rotations and delivery replays.
        "webhook": env("THROTTLE_WEBHOOK", "120/min"),
    },
}
# The throttles (jobs/api/throttles.py) count in the default cache; a count the cache could
# not give lets the request through, as a Redis outage does.
RATELIMIT_FAIL_OPEN = True

SPECTACULAR_SETTINGS = {
    "TITLE": "jobplatform API",
    "DESCRIPTION": "Upload files, run processing jobs on them, and download the results.",
    "VERSION": "1.0.0",
    # A webhook delivery's state beside a job's: two "state" enums, each named for what it is.
    "ENUM_NAME_OVERRIDES": {"StateEnum": "jobs.models.JobState",
                            "WebhookDeliveryStateEnum": "webhooks.models.DeliveryState",
                            "WebhookEventsEnum": "webhooks.models.EventFilter"},
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR", "SWAGGER_UI_FAVICON_HREF": "SIDECAR", "REDOC_DIST": "SIDECAR",
    # OpenAPI links between operations (jobs/api/schema.py), after the default enum hook.
    # The streamed uploads (served outside DRF) are added first, so links and error codes cover them.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "jobs.api.schema.add_streamed_uploads",
                             "jobs.api.schema.add_links", "jobs.api.schema.describe_errors"],
}

# --- TLS, cookies, HSTS, the proxy's scheme header; the debug page --------------------------
# DJANGO_TLS=1: browsers reach the site over HTTPS, directly or through a proxy that ends TLS.
# DJANGO_PROXY_SSL_HEADER names the header in which that proxy says a request came over HTTPS
# (X-Forwarded-Proto: https), and implies TLS. Name it only if the proxy sets or strips that
# header on every request, or a client could claim HTTPS itself (docs/operations.md).
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the upload page's script reads it to send X-CSRFToken
PROXY_SSL_HEADER = (env("DJANGO_PROXY_SSL_HEADER", "") or "").strip()
if PROXY_SSL_HEADER:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + PROXY_SSL_HEADER.upper().replace("-", "_"), "https")
TLS = env_bool("DJANGO_TLS", bool(PROXY_SSL_HEADER))
# Secure cookies whenever TLS is on, and by default with DEBUG off (browsers send Secure
# cookies to http://localhost too); DJANGO_SECURE_COOKIES=0 only for plain-HTTP test servers.
SESSION_COOKIE_SECURE = TLS or env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if TLS:
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)  # a commitment to browsers' lists
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes come from inside, over plain HTTP
# The debug page (DEBUG on, as `make run` runs) and error reports show no credentials.
DEFAULT_EXCEPTION_REPORTER_FILTER = "jobplatform.debugging.SecretHidingFilter"
DEFAULT_EXCEPTION_REPORTER = "jobplatform.debugging.SecretHidingReporter"

# --- logs and metrics (docs/operations.md, "Metrics and logs") -------------------------------
# LOG_FORMAT=json: one JSON line per record, with job_id, job_type, attempt and worker as
# fields (jobplatform/logs.py); "text" (the default) for people reading a terminal.
LOG_FORMAT = (env("LOG_FORMAT", "text") or "text").strip().lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"job": {"()": "jobplatform.logs.JobContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "pythonjsonlogger.json.JsonFormatter", "timestamp": "time",  # ISO 8601, UTC
                 "fmt": "%(levelname)s %(name)s %(message)s %(job_id)s %(job_type)s %(attempt)s %(worker)s",
                 "rename_fields": {"levelname": "level", "name": "logger"}},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain",
                             "filters": ["job"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}, "botocore": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}
# Celery replaces the root logger's handlers in a worker unless told not to; the JSON lines
# are Django's handler, so a JSON worker keeps it.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"
# Periodic maintenance logs at INFO: beat's "Sending due task" and the worker's received and
# succeeded lines for every task (a sweep every SWEEP_INTERVAL_SECONDS). `make run` sets
# MAINTENANCE_LOG_LEVEL=WARNING (unless LOG_LEVEL=DEBUG) so its console shows job events;
# a task's errors are logged at ERROR and still show.
MAINTENANCE_LOG_LEVEL = env("MAINTENANCE_LOG_LEVEL", "INFO")
LOGGING["loggers"].update({name: {"level": MAINTENANCE_LOG_LEVEL}
                           for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace")})
# GET /metrics (web) answers peers in METRICS_ALLOW (comma-separated addresses or CIDRs;
# default loopback only), or any peer sending `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_ALLOW = [c.strip() for c in (env("METRICS_ALLOW", "127.0.0.1/32,::1/128") or "").split(",") if c.strip()]
for _network in METRICS_ALLOW:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"METRICS_ALLOW: {_network!r} is not an address or a network (CIDR)") from None
METRICS_TOKEN = env("METRICS_TOKEN", "") or ""
# A worker serves its metrics (all pool processes, prometheus-client multiprocess mode, which
# needs PROMETHEUS_MULTIPROC_DIR set to an empty directory before it starts) on this port; 0: none.
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)
WORKER_METRICS_ADDR = env("WORKER_METRICS_ADDR", "127.0.0.1")
# Read by prometheus-client itself when it is imported; named here to be checked.
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", "") or ""
if WORKER_METRICS_PORT and not PROMETHEUS_MULTIPROC_DIR:
    raise ImproperlyConfigured(
        "WORKER_METRICS_PORT is set but PROMETHEUS_MULTIPROC_DIR is not: set it, before the worker starts, "
        "to an empty directory the worker can write (every pool process writes its samples there).")
# `manage.py sweep --loop` serves its own metrics on this port (same address); 0: none.
SWEEPER_METRICS_PORT = env_int("SWEEPER_METRICS_PORT", 0)
