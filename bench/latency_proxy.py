"""A TCP proxy on 127.0.0.1 that adds a fixed delay to every HTTP request, and counts the requests.

A real S3 bucket answers a GET in 15-50 ms; moto's server answers in about one. Put this proxy in front of
moto and point the S3 endpoint at it, and every request waits `delay` seconds before it is forwarded: the
round trip a client pays on a real bucket, without the bandwidth limits of one.

A request starts when the client sends bytes after the server last answered on that connection (HTTP/1.1
keep-alive: one request at a time per connection), so each request is delayed once however it is split.
The proxy also counts requests, and LIST requests (`GET /bucket?...list-type=2` or `?prefix=`) apart.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class RequestCounts:
    requests: int = 0
    lists: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, first_bytes: bytes) -> None:
        line = first_bytes.split(b"\r\n", 1)[0]
        is_list = line.startswith(b"GET ") and (b"list-type=" in line or b"prefix=" in line)
        with self.lock:
            self.requests += 1
            self.lists += is_list

    def reset(self) -> None:
        with self.lock:
            self.requests = 0
            self.lists = 0


class LatencyProxy:
    """Forward 127.0.0.1:<port> to `target`, delaying each request by `delay` seconds."""

    def __init__(self, target_host: str, target_port: int, delay: float) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.counts = RequestCounts()
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(512)
        self.port = self.server.getsockname()[1]
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="latency-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LatencyProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.closed.set()
        self.server.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        answered = threading.Event()
        answered.set()  # the connection's first bytes start a request
        threading.Thread(target=self._pump_answers, args=(upstream, client, answered), daemon=True).start()
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                if answered.is_set():
                    answered.clear()
                    self.counts.add(data)
                    time.sleep(self.delay)
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    @staticmethod
    def _pump_answers(upstream: socket.socket, client: socket.socket, answered: threading.Event) -> None:
        try:
            while True:
                data = upstream.recv(262144)
                if not data:
                    break
                client.sendall(data)
                answered.set()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
