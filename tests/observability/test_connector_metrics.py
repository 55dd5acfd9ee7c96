"""A vendor that is down, through the real connector and its guard (breaker and rate
limit, as `build_connectors` sets them up): each request's duration and error kind are
counted, the breaker gauge follows the breaker, and a process's probe server (what
`--metrics-port` starts) serves them over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from csautomation.connectors.base import NotifyRequest
from csautomation.connectors.config import SlackConfig
from csautomation.connectors.loader import build_connectors
from csautomation.errors import CircuitOpenError, ConnectorUnavailableError
from csautomation.runtime.probe import ProbeServer
from factories import account, new_store
from fakes.hooks import FakeHooks
from observability.conftest import parse, value

CONNECTOR = "slack-observed"


def note(n: int) -> NotifyRequest:
    acme = account()
    key = f"playbook:r1:ACME:2030-03:alert-{n}"
    return NotifyRequest(key, "playbook:r1:ACME:2030-03", "alert", acme, "#cs", "Acme at risk")


@pytest.fixture
def fake() -> Iterator[FakeHooks]:
    with FakeHooks() as server:
        yield server


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_failing_vendor_counts_errors_and_opens_the_breaker_gauge(
    fake: FakeHooks, tmp_path: Path
) -> None:
    config = SlackConfig.model_validate(
        {
            "id": CONNECTOR,
            "type": "slack",
            "webhook_url_env": "OBS_SLACK_URL",
            "timeout": "2s",
            "breaker": {"failures": 2, "reset_after": "10m"},
        }
    )
    store = new_store(tmp_path)
    connectors = build_connectors(
        {CONNECTOR: config},
        store,
        env={"OBS_SLACK_URL": fake.slack_url()},
        verify=fake.ca_file(tmp_path),
    )
    slack = connectors.notifier(CONNECTOR)
    errors = "csauto_connector_errors_total"
    calls = "csauto_connector_call_seconds_count"
    state = "csauto_connector_breaker_state"
    assert sample(state, connector=CONNECTOR) == 0  # closed, from the start
    before = {
        kind: sample(errors, connector=CONNECTOR, kind=kind)
        for kind in ("unavailable", "circuit_open")
    }
    fake.down = True  # every request answered 503
    try:
        for n in range(2):
            with pytest.raises(ConnectorUnavailableError):
                slack.notify(note(n))
        with pytest.raises(CircuitOpenError):
            slack.notify(note(2))  # no request made
        assert len(list(fake.calls("POST", "/slack/"))) == 2
        unavailable = sample(errors, connector=CONNECTOR, kind="unavailable")
        assert unavailable - before["unavailable"] == 2
        circuit_open = sample(errors, connector=CONNECTOR, kind="circuit_open")
        assert circuit_open - before["circuit_open"] == 1
        assert sample(calls, connector=CONNECTOR, operation="notify") >= 2
        assert sample(state, connector=CONNECTOR) == 2  # open

        with ProbeServer(port=0) as probe, httpx.Client(base_url=probe.url, timeout=5) as http:
            live = http.get("/health/live")
            assert live.status_code == 200 and live.json() == {"status": "live"}
            scraped = http.get("/metrics")
            assert scraped.status_code == 200
            assert http.get("/elsewhere").status_code == 404
    finally:
        connectors.close()
        store.engine.dispose()
    names, samples = parse(scraped.text)
    assert value(samples, state, connector=CONNECTOR) == 2
    assert value(samples, errors, connector=CONNECTOR, kind="unavailable") == unavailable
    # a process's own series only: the store's are the API's to serve
    assert "csauto_connector_call_seconds" in names
    assert "csauto_signals_stored_total" not in names


def test_the_probe_server_says_clearly_when_its_port_is_taken() -> None:
    from csautomation.errors import ServiceUnavailableError

    with ProbeServer(port=0) as first, pytest.raises(ServiceUnavailableError) as caught:
        ProbeServer(port=first.port).start()
    assert "--metrics-port" in str(caught.value)
