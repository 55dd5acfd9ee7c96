"""CSAUTO_OTEL=true puts Temporal's TracingInterceptor on the clients (and so on the
workers built on them); without the `otel` extra it is a clear configuration error."""

from __future__ import annotations

import sys

import pytest

from csautomation.errors import ConfigError
from csautomation.runtime.server import connect, free_port, tracing_interceptors
from csautomation.settings import Settings


def test_the_setting_reads_csauto_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CSAUTO_OTEL", raising=False)
    assert Settings().otel is False
    monkeypatch.setenv("CSAUTO_OTEL", "true")
    assert Settings().otel is True


def test_off_means_no_interceptor() -> None:
    assert tracing_interceptors(False) == []


@pytest.mark.asyncio
async def test_on_puts_the_tracing_interceptor_on_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.contrib.opentelemetry import TracingInterceptor

    # the provider it sets up is kept here, not made the process's (FastAPI traces too)
    provided: list[TracerProvider] = []
    monkeypatch.setattr(trace, "set_tracer_provider", provided.append)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    interceptors = tracing_interceptors(True)
    assert [type(i) for i in interceptors] == [TracingInterceptor]
    assert len(provided) == 1 and isinstance(provided[0], TracerProvider)
    provided[0].shutdown()
    client = await connect(f"127.0.0.1:{free_port()}", lazy=True, interceptors=interceptors)
    assert any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"])


def test_without_the_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "temporalio.contrib.opentelemetry", None)
    with pytest.raises(ConfigError) as caught:
        tracing_interceptors(True)
    assert "pip install 'csautomation[otel]'" in str(caught.value)
