"""Serving the review app with uvicorn: in the foreground (`serve`), or on a background
thread for tests and demos (`BackgroundServer`), which returns once the socket accepts
connections and stops when asked."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from csautomation.errors import ServiceUnavailableError


def serve(app: ASGIApp, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until Ctrl-C or SIGTERM. Behind a TLS proxy, build the app with
    `secure_cookies=True`."""
    uvicorn.run(app, host=host, port=port, ws="none", server_header=False)


async def serve_async(app: ASGIApp, host: str = "127.0.0.1", port: int = 8000) -> None:
    """`serve` inside a running event loop, until cancelled: for a command that first
    connects to Temporal on that loop (`TemporalActions` must use the client on the loop
    that made it). A port in use is a clear error, not an exit."""
    async with serving(app, host, port):
        await asyncio.Event().wait()


class _Server(uvicorn.Server):
    """Calls `on_ready` once start-up has finished, whether or not it succeeded; leaves
    Ctrl-C to the command that runs it unless it owns the process (`signals`)."""

    def __init__(
        self, config: uvicorn.Config, on_ready: Callable[[], None], signals: bool = True
    ) -> None:
        super().__init__(config)
        self.on_ready = on_ready
        self.signals = signals

    async def startup(self, sockets: Any = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self.signals:
            with super().capture_signals():
                yield
        else:
            yield


class BackgroundServer:
    """uvicorn on a daemon thread. `port=0` picks a free port; read it from `.port` or
    `.url` once started.

        with BackgroundServer(app) as server:
            httpx.get(server.url + "/login")
    """

    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, timeout: float = 15.0
    ) -> None:
        self.host = host
        self.timeout = timeout
        self._ready = threading.Event()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            ws="none",
            lifespan="on",
            log_config=None,  # leave the process's logging as it is
            log_level="warning",
            server_header=False,
        )
        self._server = _Server(config, self._ready.set)
        self._thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)
        self.port = port
        self._failed = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        """Start and wait until the server accepts connections (or failed to start)."""
        self._thread.start()
        self._ready.wait(self.timeout)
        if not self._server.started or self._failed:
            self.stop()
            why = "it could not listen (see uvicorn's log)" if self._failed else "in time"
            raise ServiceUnavailableError(
                f"the review server did not start on {self.host}:{self.port}: {why}"
            )
        sockets = [s for srv in self._server.servers for s in (srv.sockets or ())]
        self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Finish open requests and stop; force it if they take longer than the timeout."""
        if not self._thread.is_alive():
            return
        self._server.should_exit = True
        self._thread.join(self.timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(self.timeout)

    def _run(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # uvicorn exits when it cannot bind; it has logged why
            self._failed = True
        finally:
            self._ready.set()  # start-up failed before `startup` ran: do not keep start waiting

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """uvicorn on the current event loop while the block runs; yields the URL (port 0: a
    free one). For commands whose Temporal client lives on this loop (the demo). The socket
    is bound here first: uvicorn itself would exit the process on a port in use."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServiceUnavailableError(
            f"the review page cannot listen on {host}:{port} ({exc.strerror}); "
            "choose another port with --port (0 takes any free one)"
        ) from None
    ready = asyncio.Event()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="none",
        # the app has no start-up or shut-down handlers; a lifespan task would only be
        # cancelled (and logged as an error) when the command stops
        lifespan="off",
        log_config=None,
        log_level="warning",
        server_header=False,
    )
    server = _Server(config, ready.set, signals=False)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await ready.wait()
    try:
        yield f"http://{host}:{int(sock.getsockname()[1])}"
    finally:
        server.should_exit = True
        await task
        sock.close()
