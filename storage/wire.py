"""A minimal HTTP/1.1 client for the fast path's small S3 requests (storage/fast.py).

The fast path sends three requests per job: the web process's HEAD of the input, and the
worker's GET of it and PUT of result.json. On urllib3 each cost 0.6-0.7 ms of CPU on this
project's 2-core machine (its pool and retry bookkeeping, and http.client's header parser,
which goes through the email package), against 0.1-0.15 ms for the exchange written
directly on a socket; docs/benchmarks.md has the numbers. urllib3 is general: proxies,
redirects, many hosts, every framing. This client does only what these requests need:

- one origin (the configured endpoint), plain TCP or TLS verified against a CA bundle;
- keep-alive connections in a small LIFO pool, checked for a close by the server before
  reuse; a request whose reused connection turns out dead is sent once more on a new one;
- bodies framed by Content-Length, chunked, or by the end of the connection;
- retries of connection failures and of 429/5xx answers, with urllib3's backoff (the
  first retry at once, then factor * 2^(n-1) plus jitter, capped) and Retry-After;
- every socket or protocol failure raised as WireError, a ConnectionError.
"""

from __future__ import annotations

import random
import select
import socket
import ssl
import threading
import time

from urllib3 import HTTPHeaderDict  # case-insensitive; repeated headers joined with ", "

MAX_LINE = 65536
MAX_HEADERS = 200
BUFFER = 1 << 16  # per connection; larger reads bypass it
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_FORBIDDEN = ("\r", "\n", "\0")


class WireError(ConnectionError):
    """The exchange broke: refused, reset, timed out, or an answer that is not HTTP/1.1.
    `stale`: the connection was found closed or reset before any byte of an answer, as a
    keep-alive connection is when the server has closed it meanwhile."""

    def __init__(self, message: str, *, stale: bool = False) -> None:
        super().__init__(message)
        self.stale = stale


def build_request(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The request's head. A header with CR, LF or NUL in it is refused (ValueError), as
    http.client refuses it: it would end the header early and smuggle in another."""
    lines = [f"{method} {path} HTTP/1.1"]
    for name, value in headers.items():
        value = str(value)
        if any(c in name or c in value for c in _FORBIDDEN) or ":" in name or not name:
            raise ValueError(f"invalid HTTP header {name!r}")
        lines.append(f"{name}: {value}")
    if (body or method in ("PUT", "POST")) and "content-length" not in {n.lower() for n in headers}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Connection:
    """One keep-alive connection to the endpoint."""

    def __init__(self, host: str, port: int, *, connect_timeout: float, read_timeout: float,
                 tls: ssl.SSLContext | None = None) -> None:
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if tls is not None:
                    sock = tls.wrap_socket(sock, server_hostname=host)
                sock.settimeout(read_timeout)
            except BaseException:
                sock.close()
                raise
        except OSError as exc:  # refused, unreachable, timed out, TLS refused
            raise WireError(f"cannot connect to {host}:{port}: {exc}") from exc
        self.sock, self.tls = sock, tls is not None
        self.file = sock.makefile("rb", buffering=BUFFER)
        self.closed = False

    def alive(self) -> bool:
        """For an idle connection: False if the server has closed it, or sent bytes that no
        request asked for (either makes the socket readable)."""
        if self.closed:
            return False
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> None:
        head = build_request(method, path, headers, body)
        try:
            if len(body) <= 65536:
                self.sock.sendall(head + body)
            else:
                self.sock.sendall(head)
                self.sock.sendall(body)
        except OSError as exc:
            self.close()
            raise WireError(f"sending the request failed: {exc}",
                            stale=isinstance(exc, BrokenPipeError | ConnectionResetError)) from exc

    def getresponse(self, method: str, pool: Pool | None = None) -> Response:
        """Reads the answer's status line and headers; the body is read from the Response."""
        try:
            while True:
                line = self.file.readline(MAX_LINE + 1)
                if not line:
                    raise WireError("the server closed the connection without an answer", stale=True)
                parts = line.split(None, 2)
                if (len(line) > MAX_LINE or len(parts) < 2 or not parts[0].startswith(b"HTTP/1.")
                        or not parts[1].isdigit() or len(parts[1]) != 3):
                    raise WireError(f"not an HTTP/1.x status line: {line[:100]!r}")
                status, version = int(parts[1]), parts[0]
                headers = HTTPHeaderDict()
                for _ in range(MAX_HEADERS):
                    line = self.file.readline(MAX_LINE + 1)
                    if line in (b"\r\n", b"\n"):
                        break
                    name, sep, value = line.partition(b":")
                    if not line.endswith(b"\n") or not sep or not name.strip():
                        raise WireError(f"malformed header line: {line[:100]!r}")
                    headers.add(name.strip().decode("latin-1"), value.strip().decode("latin-1"))
                else:
                    raise WireError(f"more than {MAX_HEADERS} headers")
                if status >= 200 or status == 101:
                    break  # an interim 1xx answer is followed by the real one
        except WireError:  # an OSError too: let it through as it is
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise WireError(f"reading the answer failed: {exc}", stale=isinstance(exc, ConnectionResetError)) from exc
        connection = headers.get("Connection", "").lower()
        keep = "close" not in connection and (version == b"HTTP/1.1" or "keep-alive" in connection)
        if method == "HEAD" or status in (204, 304):
            length, chunked = 0, False
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            length, chunked = None, True
        elif "Content-Length" in headers:
            value = headers["Content-Length"]
            if not value.isdigit():
                self.close()
                raise WireError(f"bad Content-Length {value[:50]!r}")
            length, chunked = int(value), False
        else:
            length, chunked, keep = None, False, False  # the body ends with the connection
        return Response(self, pool, status, headers, length, chunked, keep)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.file.close()
            finally:
                self.sock.close()


class Response:
    """An answer whose body is read as it is wanted: read(amt), or .data for all of it.
    release_conn() gives a wholly read connection back to its pool (or closes it); close()
    drops the connection, unread bytes and all."""

    def __init__(self, conn: Connection, pool: Pool | None, status: int, headers: HTTPHeaderDict, length: int | None,
                 chunked: bool, keep: bool) -> None:
        self.conn, self.pool, self.status, self.headers = conn, pool, status, headers
        self.remaining, self.chunked, self.keep = length, chunked, keep
        self.chunk_left = 0  # of the current chunk, in chunked mode
        self.done = length == 0
        self._data: bytes | None = None

    def read(self, amt: int | None = None) -> bytes:
        if self.done:
            return b""
        try:
            if self.chunked:
                data = self._read_chunked(amt)
            elif self.remaining is None:
                data = self.conn.file.read() if amt is None else self.conn.file.read(amt)
                if not data or amt is None:
                    self.done = True
            else:
                want = self.remaining if amt is None else min(amt, self.remaining)
                data = self.conn.file.read(want)
                if len(data) < want:
                    raise WireError(f"the body ended {self.remaining - len(data)} bytes short")
                self.remaining -= want
                self.done = self.remaining == 0
        except WireError:  # an OSError too: let it through as it is
            self.conn.close()
            raise
        except OSError as exc:
            self.conn.close()
            raise WireError(f"reading the body failed: {exc}") from exc
        return data

    def _read_chunked(self, amt: int | None) -> bytes:
        out = []
        wanted = amt if amt is not None else -1
        while wanted != 0:
            if self.chunk_left == 0:
                line = self.conn.file.readline(MAX_LINE + 1)
                size = line.split(b";", 1)[0].strip()
                try:
                    self.chunk_left = int(size, 16)
                except ValueError:
                    raise WireError(f"bad chunk size line {line[:50]!r}") from None
                if self.chunk_left == 0:  # the last chunk: skip the trailers, then the body is over
                    while (line := self.conn.file.readline(MAX_LINE + 1)) not in (b"\r\n", b"\n"):
                        if not line:
                            raise WireError("the connection closed in the chunked trailer")
                    self.done = True
                    break
            n = self.chunk_left if wanted < 0 else min(wanted, self.chunk_left)
            data = self.conn.file.read(n)
            if len(data) < n:
                raise WireError("the connection closed inside a chunk")
            out.append(data)
            self.chunk_left -= n
            if wanted > 0:
                wanted -= n
            if self.chunk_left == 0 and self.conn.file.read(2) not in (b"\r\n",):
                raise WireError("a chunk did not end with CRLF")
        return b"".join(out)

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self.read()
        return self._data

    def release_conn(self) -> None:
        """Back to the pool if the body was read to its end and the server keeps the
        connection open, else closed. (A connection of its own, as a StartedGet's, has no
        pool: its owner keeps or closes it.)"""
        if self.pool is None:
            return
        conn, self.conn = self.conn, None
        if conn is not None:
            if self.done and self.keep:
                self.pool.put(conn)
            else:
                conn.close()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()


class Pool:
    """Keep-alive connections to one endpoint, and the request loop with its retries."""

    def __init__(self, host: str, port: int, *, attempts: int, connect_timeout: float, read_timeout: float,
                 tls: ssl.SSLContext | None = None, maxsize: int = 20, backoff_factor: float = 0.5,
                 backoff_jitter: float = 0.5, backoff_max: float = 20.0) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.attempts, self.maxsize = max(1, attempts), maxsize
        self.backoff = (backoff_factor, backoff_jitter, backoff_max)
        self.idle: list[Connection] = []
        self.lock = threading.Lock()

    def connect(self) -> Connection:
        return Connection(self.host, self.port, connect_timeout=self.connect_timeout,
                          read_timeout=self.read_timeout, tls=self.tls)

    def take(self) -> Connection | None:
        """An idle connection the server has not closed, or None."""
        while True:
            with self.lock:
                conn = self.idle.pop() if self.idle else None
            if conn is None or conn.alive():
                return conn
            conn.close()

    def put(self, conn: Connection) -> None:
        if not conn.closed:
            with self.lock:
                if len(self.idle) < self.maxsize:
                    self.idle.append(conn)
                    return
            conn.close()

    def delay(self, failures: int, answer: Response | None = None) -> float:
        """How long to wait before the next attempt, after `failures` failed ones in a row."""
        factor, jitter, cap = self.backoff
        retry_after = answer.headers.get("Retry-After", "") if answer is not None else ""
        if retry_after.isdigit():
            return min(cap, float(retry_after))
        if failures <= 1:
            return 0.0
        return min(cap, factor * 2 ** (failures - 1) + random.random() * jitter)

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"", *,
                preload: bool = True) -> Response:
        """Sends the request and returns the answer: the first one that is not a 429 or 5xx,
        or the last one when the attempts are used up. Raises WireError when no answer came
        within them. With preload, the body is read and the connection is back in the pool."""
        failures = 0
        while True:
            conn = self.take()
            reused = conn is not None
            try:
                if conn is None:
                    conn = self.connect()
                conn.request(method, path, headers, body)
                response = conn.getresponse(method, pool=self)
                if response.status in RETRY_STATUSES and failures + 1 < self.attempts:
                    response.read()
                    response.release_conn()
                    failures += 1
                    time.sleep(self.delay(failures, response))
                    continue
                if preload:
                    response.data  # noqa: B018
                    response.release_conn()
                return response
            except WireError as exc:
                if conn is not None:
                    conn.close()
                if reused and exc.stale:
                    continue  # the server had closed this idle connection: send it on a new one
                failures += 1
                if failures >= self.attempts:
                    raise
                time.sleep(self.delay(failures))
