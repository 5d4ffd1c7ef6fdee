"""A loopback TCP proxy in front of a real server, for failures a test must cause on the wire.

Each accepted connection is relayed to the upstream server byte for byte, unless the
connection's plan says otherwise:
- ("cut", n): relay the upstream's answer for n bytes, then close both sockets (a
  connection dropped in the middle of a response body);
- ("answer", raw_bytes): do not contact the upstream; send raw_bytes and close (a server
  answering 503, say).
Connections beyond the plan are relayed whole. `requests` keeps the first bytes each
client sent, so a test can see what was asked (a Range header, for instance).
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, plans: list[tuple[str, object]] | None = None):
        self.upstream = (upstream_host, upstream_port)
        self.plans = list(plans or [])
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True, name="tcp-proxy")
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            plan = self.plans.pop(0) if self.plans else ("relay", None)
            threading.Thread(target=self._serve, args=(client, plan), daemon=True).start()

    def _serve(self, client: socket.socket, plan: tuple[str, object]) -> None:
        kind, arg = plan
        with client:
            client.settimeout(30)
            first = client.recv(65536)
            self.requests.append(first)
            if kind == "answer":
                client.sendall(arg)
                return
            with socket.create_connection(self.upstream, timeout=30) as upstream:
                upstream.sendall(first)
                forward = threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True)
                forward.start()
                self._pipe(upstream, client, arg if kind == "cut" else None)
                for sock in (client, upstream):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def _pipe(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while limit is None or sent < limit:
                data = source.recv(65536 if limit is None else min(65536, limit - sent))
                if not data:
                    return
                sink.sendall(data)
                sent += len(data)
        except OSError:
            return

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
