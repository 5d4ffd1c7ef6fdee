"""One POST to a webhook URL, to an address the destination check has just allowed.

httpcore (the engine under httpx) lets the caller supply the network backend: ours opens
the TCP connection to the checked addresses themselves, so the name is resolved once, by
the check, and the connection cannot land anywhere the check did not see. The URL, and so
the Host header, TLS server name and certificate check, keep the host name. No proxy from
the environment and no redirects are followed: either would bypass the check.

Each read and write has the timeout, and the whole attempt a deadline of three of them, so
a receiver that answers one byte at a time cannot hold a worker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpcore

from jobplatform import destinations

USER_AGENT = "jobplatform-webhooks/1"


@dataclass(frozen=True)
class Answer:
    status_code: int | None = None
    address: str = ""
    error: str = ""
    snippet: str = ""
    duration_ms: int = 0
    refused: bool = False  # the destination check refused the URL: no retry can help

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeadlineStream(httpcore.NetworkStream):
    """A stream whose every read and write gets at most the time left until `deadline`."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self.stream, self.deadline = stream, deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise error("the attempt's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, timeout=self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, timeout=self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        tls = self.stream.start_tls(ssl_context, server_hostname=server_hostname,
                                    timeout=self._left(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(tls, self.deadline)

    def get_extra_info(self, info: str):
        return self.stream.get_extra_info(info)


class CheckedAddressBackend(httpcore.NetworkBackend):
    """Connects to the given addresses in turn, whatever host name httpcore asks for."""

    def __init__(self, addresses: tuple[str, ...], deadline: float):
        self.addresses, self.deadline = addresses, deadline
        self.connected = ""
        self.tcp = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        failure: Exception | None = None
        for address in self.addresses:
            try:
                stream = self.tcp.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                              socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            self.connected = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
            return DeadlineStream(stream, self.deadline)
        raise failure or httpcore.ConnectError(f"no address to connect to for {host}")

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("webhooks are never sent to a Unix socket")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def post(url: str, *, headers: dict[str, str], body: bytes, timeout: float, snippet_bytes: int) -> Answer:
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        destination = destinations.check(url)
    except destinations.DestinationRefused as exc:
        return Answer(error=f"{exc.code}: {exc.message}"[:500], refused=True, duration_ms=elapsed())
    backend = CheckedAddressBackend(destination.addresses, deadline=started + 3 * timeout)
    request_headers = [("Content-Type", "application/json"), ("User-Agent", USER_AGENT), *headers.items()]
    try:
        with httpcore.ConnectionPool(network_backend=backend, max_connections=1, retries=0) as pool, pool.stream(
                "POST", url, headers=request_headers, content=body,
                extensions={"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}},
        ) as response:
            kept = bytearray()
            for chunk in response.iter_stream():
                kept += chunk
                if len(kept) >= snippet_bytes:
                    break  # the rest of the answer is not needed; closing drops the connection
            snippet = bytes(kept[:snippet_bytes]).decode("utf-8", "replace").replace("\x00", "")
            return Answer(status_code=response.status, address=backend.connected, snippet=snippet,
                          duration_ms=elapsed())
    except httpcore.TimeoutException as exc:
        error = f"timeout: {type(exc).__name__} after {timeout:g} s"
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return Answer(address=backend.connected, error=error[:500], duration_ms=elapsed())
