"""Small S3 requests without the botocore client: HEAD, GET and single PUT.

A job makes three small requests (the web process's HEAD of the input, the worker's GET
of it and its PUT of result.json), and through a botocore client each one runs the whole
client pipeline: parameter validation, the endpoint rule set, a dozen event hooks, the
response parser. For a tiny object that pipeline costs several times the HTTP exchange
itself (bench/throughput.py, docs/benchmarks.md). These three requests are simple enough
to send directly:

- signed by storage/sigv4.py, which writes the same signature as botocore's S3SigV4Auth
  (checked header for header in tests) at a tenth of its CPU;
- sent on storage/wire.py's keep-alive pool, a minimal HTTP/1.1 client made for these
  requests (urllib3, which botocore uses, cost 4-5 times its CPU per request here), and
  retried on connection errors and 5xx answers with urllib3's backoff and the attempts
  the botocore client is configured with (S3_MAX_ATTEMPTS);
- answered errors go through the same translation as the client's (s3.translate).

The fast path is used only where it is exact: path-style addressing to a configured
endpoint (MinIO, SeaweedFS, and any S3 that accepts path-style), static credentials,
and keys without "." or ".." or empty path segments (which an HTTP stack may normalise
away). Anything else, and everything with S3_FAST_PATH=0, goes through the client.
"""

from __future__ import annotations

import os
import re
import threading
from urllib.parse import quote, urlsplit

import botocore.exceptions
from django.conf import settings

from .sigv4 import Signer
from .wire import Pool, Response, WireError

# Connection-level failures and broken bodies: transient, like botocore's ConnectionError.
HTTP_ERRORS = (WireError, ConnectionError, TimeoutError)
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_ERROR_MESSAGE = re.compile(rb"<Message>([^<]{0,500})</Message>")


class Fast:
    """One per process: a keep-alive pool to the endpoint and a signer."""

    def __init__(self) -> None:
        from .s3 import USER_AGENT

        self.base = settings.S3_ENDPOINT_URL.rstrip("/")
        parts = urlsplit(self.base)
        self.base_path = parts.path
        self.user_agent = USER_AGENT
        self.spare = None  # the keep-alive connection of the last StartedGet, for the next
        self.signer = Signer(access_key=settings.S3_ACCESS_KEY_ID, secret_key=settings.S3_SECRET_ACCESS_KEY,
                             region=settings.S3_REGION or "us-east-1", endpoint=self.base)
        tls = None
        if parts.scheme == "https":  # verified against the CA bundle botocore would use
            import ssl

            from botocore.httpsession import get_cert_path

            tls = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True))
        self.pool = Pool(parts.hostname, parts.port or (443 if tls else 80), tls=tls,
                         attempts=settings.S3_MAX_ATTEMPTS, connect_timeout=settings.S3_CONNECT_TIMEOUT,
                         read_timeout=settings.S3_READ_TIMEOUT)

    def path(self, bucket: str, key: str) -> str:
        return f"{self.base_path}/{quote(bucket, safe='')}/{quote(key, safe='/~')}"

    def request(self, method: str, bucket: str, key: str, *, headers: dict | None = None, body: bytes = b"",
                stream: bool = False) -> Response:
        """Sends one signed request; returns the response for a 2xx, raises ClientError otherwise.

        Connection errors that outlast the retries propagate as WireError (transient)."""
        path = self.path(bucket, key)
        headers = self.signer.sign(method, path, {"User-Agent": self.user_agent, **(headers or {})}, body)
        return self.checked(method, self.pool.request(method, path, headers, body, preload=not stream))

    def checked(self, method: str, response: Response) -> Response:
        """The response, if it is a 2xx; else ClientError with the answer's code and message."""
        if response.status < 300:
            return response
        data = b"" if method == "HEAD" else response.data
        response.release_conn()
        code, message = _ERROR_CODE.search(data), _ERROR_MESSAGE.search(data)
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": code.group(1).decode() if code else str(response.status),
                       "Message": message.group(1).decode(errors="replace") if message else ""},
             "ResponseMetadata": {"HTTPStatusCode": response.status}}, method)


class StartedGet:
    """A GET that is sent but not yet answered, so that the caller can do other work (the
    worker's claim of the job) while the object store answers. It uses a connection of
    its own, kept for the next one once its body was read to the end; `response()` gives
    the answer (None if the exchange broke: the caller then sends the GET again, with
    retries), `done(whole)` ends it."""

    def __init__(self, fast: Fast, bucket: str, key: str) -> None:
        self.fast = fast
        with _lock:
            self.conn, fast.spare = fast.spare, None
        if self.conn is not None and not self.conn.alive():
            self.conn.close()
            self.conn = None
        if self.conn is None:
            self.conn = fast.pool.connect()
        self.answer = None
        path = fast.path(bucket, key)
        self.conn.request("GET", path, fast.signer.sign("GET", path, {"User-Agent": fast.user_agent}))

    def response(self) -> Response | None:
        """The 2xx answer; ClientError for an error answer; None if the exchange broke. Its
        connection is closed on any failure."""
        try:
            self.answer = self.conn.getresponse("GET")
            return self.fast.checked("GET", self.answer)
        except BaseException as exc:
            self.done(whole=False)
            if isinstance(exc, HTTP_ERRORS):
                return None
            raise

    def done(self, *, whole: bool) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        whole = whole and self.answer is not None and self.answer.keep
        with _lock:
            if whole and self.fast.spare is None:
                self.fast.spare, conn = conn, None
        if conn is not None:
            conn.close()  # unread bytes would poison it


def start_get(bucket: str, key: str) -> StartedGet | None:
    """Sends a GET now and returns it unanswered; None if it cannot be sent (the caller
    reads the ordinary way later, which retries)."""
    try:
        return StartedGet(get(), bucket, key)
    except HTTP_ERRORS:
        return None


_fast: dict[tuple, Fast] = {}
_lock = threading.Lock()


def usable(key: str, metadata: dict | None = None) -> bool:
    """Whether this request can take the fast path (see the module's docstring)."""
    if not (settings.S3_FAST_PATH and settings.S3_ENDPOINT_URL and settings.S3_ADDRESSING_STYLE == "path"
            and settings.S3_ACCESS_KEY_ID and settings.S3_SECRET_ACCESS_KEY):
        return False
    if metadata and not all(_plain(str(k)) and _plain(str(v)) for k, v in metadata.items()):
        return False
    return bool(key) and not any(part in ("", ".", "..") for part in key.split("/"))


def _plain(text: str) -> bool:
    """ASCII without control characters: sent in a header as it is, as S3 stores it."""
    return text.isascii() and text.isprintable()


def get() -> Fast:
    # By pid: a forked Celery child builds its own rather than share its parent's sockets.
    # By the settings it is built from: a changed setting (a test's override) takes effect.
    key = (os.getpid(), settings.S3_ENDPOINT_URL, settings.S3_ACCESS_KEY_ID, settings.S3_SECRET_ACCESS_KEY,
           settings.S3_REGION, settings.S3_MAX_ATTEMPTS, settings.S3_CONNECT_TIMEOUT, settings.S3_READ_TIMEOUT)
    fast = _fast.get(key)
    if fast is None:
        with _lock:
            fast = _fast.get(key) or _fast.setdefault(key, Fast())
    return fast


def metadata_from(headers) -> dict:
    return {name[11:]: value for name, value in headers.items() if name.lower().startswith("x-amz-meta-")}
