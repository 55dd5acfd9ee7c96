"""A real HTTPS server on 127.0.0.1, on a thread, with a trustme CA and injected faults.

Each fake vendor registers routes (method, path regex, handler). Faults are drawn from a
seeded random generator at the given rate, so a test is repeatable:

    500      an internal error with the vendor's error body
    503      unavailable, with Retry-After: 1
    429      rate limited, with Retry-After: 1
    timeout  the response is held back longer than the client's timeout
    reset    the connection is closed with a TCP reset, no response

`down = True` answers every request with 503 (a vendor hard down). `latency =
Latency(0.08, 0.25, seed)` holds each answer back a seeded uniform draw of seconds, as a
vendor across the internet does. Every request is kept in `requests` for assertions.
"""

from __future__ import annotations

import json
import random
import re
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

FAULTS = ("500", "503", "429", "timeout", "reset")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    match: re.Match[str] | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-encoded unless bytes or str
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


class Faults:
    def __init__(self, rate: float = 0.0, kinds: tuple[str, ...] = FAULTS, seed: int = 0):
        self.rate = rate
        self.kinds = kinds
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: dict[str, int] = {}

    def draw(self) -> str | None:
        with self._lock:
            if self.rate <= 0 or self._random.random() >= self.rate:
                return None
            kind = self._random.choice(self.kinds)
            self.injected[kind] = self.injected.get(kind, 0) + 1
            return kind


class Latency:
    """A vendor's answer time: uniform in [low, high] seconds, drawn from a seeded
    generator so that a run is repeatable."""

    def __init__(self, low: float, high: float, seed: int = 0) -> None:
        self.low, self.high = low, high
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> float:
        with self._lock:
            return self._random.uniform(self.low, self.high)


class _Server(ThreadingHTTPServer):
    # a vendor's front end does not drop connections at 32 concurrent clients; the
    # standard library's backlog of 5 would, and they would look like injected timeouts
    request_queue_size = 128


class FakeServer:
    """Subclasses add routes in `__init__` with `self.route(...)`."""

    # the vendor's body for an injected 500 (subclasses use the vendor's own shape)
    error_body: Any = {"error": "InternalError", "description": "injected fault"}
    hold_seconds = 2.0  # how long a 'timeout' fault holds the response back

    def __init__(self, ca: trustme.CA | None = None) -> None:
        self.ca = ca or trustme.CA()
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[Request] = []
        self.faults = Faults()
        self.latency: Latency | None = None
        self.down = False
        self.lock = threading.RLock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- routes ---------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def dispatch(self, req: Request) -> Response:
        for method, pattern, handler in self.routes:
            m = pattern.match(req.path)
            if m and method == req.method:
                req.match = m
                with self.lock:
                    return handler(req)
        return Response(404, self.not_found_body(req))

    def not_found_body(self, req: Request) -> Any:
        return {"error": "NotFound", "description": f"no route for {req.method} {req.path}"}

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def ca_file(self, folder: Path) -> str:
        path = folder / "fake-vendor-ca.pem"
        self.ca.cert_pem.write_to_path(str(path))
        return str(path)

    def start(self) -> FakeServer:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                req = Request(
                    self.command,
                    split.path,
                    parse_qs(split.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with fake.lock:
                    fake.requests.append(req)
                fault = "503" if fake.down else fake.faults.draw()
                if fake.latency is not None:  # the vendor's own time, not a synchronisation
                    fake._release.wait(fake.latency.draw())
                if fault == "reset":
                    linger = struct.pack("ii", 1, 0)  # close with RST, no response
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "timeout":
                    fake._release.wait(fake.hold_seconds)
                if fault in ("500", "503", "429"):
                    status = int(fault)
                    headers = {} if status == 500 else {"Retry-After": "1"}
                    resp = Response(status, fake.error_body, headers)
                else:
                    resp = fake.dispatch(req)
                self._send(resp)

            def _send(self, resp: Response) -> None:
                if isinstance(resp.body, bytes):
                    payload = resp.body
                elif isinstance(resp.body, str):
                    payload = resp.body.encode()
                elif resp.body is None:
                    payload = b""
                else:
                    payload = json.dumps(resp.body).encode()
                try:
                    self.send_response(resp.status)
                    if payload and "Content-Type" not in resp.headers:
                        self.send_header("Content-Type", "application/json;charset=UTF-8")
                    for k, v in resp.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass  # the client gave up (its timeout): nothing to answer

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        server = _Server(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        # a short poll: shutdown() waits for the loop to look at its flag
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def calls(self, method: str, prefix: str) -> Iterator[Request]:
        with self.lock:
            reqs = list(self.requests)
        return (r for r in reqs if r.method == method and r.path.startswith(prefix))
