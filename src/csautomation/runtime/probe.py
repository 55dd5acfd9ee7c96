"""Health and metrics for the processes that serve no HTTP of their own.

`ProbeServer` answers `GET /metrics` (this process's series, see `csautomation.metrics`)
and `GET /health/live` on a small standard-library HTTP server on a daemon thread:
`csauto worker | pipeline | scheduler run --metrics-port PORT`. A thread rather than a
task on the process's event loop, so that a loop busy with (or stuck in) work still
answers a scrape, and liveness means the process is up rather than idle. prometheus_client's
own `start_http_server` serves its metrics on every path and has no health answer.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from csautomation.errors import ServiceUnavailableError
from csautomation.metrics import exposition

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

LIVE = b'{"status":"live"}'
CHECK_SECONDS = 3.0


class ProbeServer:
    """`/metrics` and `/health/live` on `host:port` (port 0: a free one, read `.port`).

    with ProbeServer(port=0) as probe:
        httpx.get(probe.url + "/metrics")
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, registry: Collector = REGISTRY
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ProbeServer:
        registry = self.registry

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # a scrape every few seconds is not news

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, kind = exposition(registry, self.headers.get("Accept", ""))
                    self._answer(200, body, kind)
                elif path == "/health/live":
                    self._answer(200, LIVE, "application/json")
                else:
                    self._answer(404, b'{"detail":"not found"}', "application/json")

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        try:
            server = ThreadingHTTPServer((self.host, self.port), _Handler)
        except OSError as exc:
            raise ServiceUnavailableError(
                f"the metrics server cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                "choose another --metrics-port (0 takes any free one)"
            ) from None
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="probe", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ProbeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
