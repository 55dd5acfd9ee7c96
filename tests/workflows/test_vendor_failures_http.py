"""Failures over real HTTPS, through the real connectors and the Temporal test server:
a vendor hard down (its breaker stops the calls, every action is dead-lettered, and
`csauto dlq retry --all` creates each once after recovery), a validation error (dead-
lettered at once, with the vendor's message), and no secret anywhere a person or a
database could see it: log lines, errors, dead letters, workflow histories."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from typer.testing import CliRunner

from csautomation import logs
from csautomation.activities.playbook import PlaybookActivities
from csautomation.activities.redrive import redrive
from csautomation.cli import app
from csautomation.connectors.registry import Connectors
from csautomation.connectors.resilience import BreakerState
from csautomation.facts.health import load_health_model
from csautomation.playbooks.spec import Playbook
from csautomation.store.deadletters import dead_letters
from csautomation.store.repo import Store
from factories import TODAY, playbook_store, vendor_connectors
from fakes.server import Faults
from fakes.vendors import SF_KEY, Vendors
from playbook_support import run_playbooks

RUNS = 20
SLOTS = 4  # activities at once: the requests that can be in flight when the breaker opens
runner = CliRunner()


def playbook(pid: str, steps: list[dict[str, Any]]) -> Playbook:
    return Playbook.model_validate(
        {
            "id": pid,
            "name": pid,
            "owner": "cs-ops",
            "steps": [*steps, {"id": "done", "complete": {"outcome": "done"}}],
        }
    )


def activities(store: Store, connectors: Connectors) -> PlaybookActivities:
    return PlaybookActivities(
        store,
        load_health_model(),
        clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC),
        connectors=connectors,
    )


@pytest.mark.asyncio
async def test_a_vendor_hard_down_is_left_alone_and_every_action_redriven_once(
    client: Client, vendors: Vendors, tmp_path: Path, db_url: str
) -> None:
    store = playbook_store(db_url)
    sf = vendors.salesforce
    sf.down = True  # every request: 503
    opened: list[int] = []  # consecutive failures counted when the breaker opened
    seen: list[int] = []  # requests the vendor had seen by then
    probes: list[int] = []

    def watch(state: BreakerState) -> None:
        if state.state == "open" and not opened:
            opened.append(state.failures)
            seen.append(len(sf.requests))
        if state.state == "half_open":
            probes.append(len(sf.requests))

    connectors = vendor_connectors(
        vendors,
        store,
        tmp_path,
        on_change=watch,
        timeout="2s",
        retry={"initial": "1s", "maximum": "10s", "attempts": 4},
        breaker={"failures": 5, "reset_after": "1h"},
    )
    book = playbook(
        "sf-down", [{"id": "call", "create_task": {"connector": "salesforce", "subject": "Call"}}]
    )
    try:
        handles, results = await run_playbooks(
            client, activities(store, connectors), book, RUNS, SLOTS
        )
    finally:
        connectors.close()

    # on_failure: continue; each run went on, its action in the dead-letter store
    assert [r.outcome for r in results] == ["incomplete"] * RUNS
    assert opened == [5]  # the threshold
    # and the vendor had seen those 5, and at most the other slots' calls in flight: the
    # breaker tells of its change after it made it, when another call may have gone out
    assert len(seen) == 1 and 5 <= seen[0] <= 5 + (SLOTS - 1)
    # calls stopped: after it opened, the vendor saw the requests already in flight and one
    # probe per reset_after (Temporal waited for it: the retries came at probe time). The
    # waits spent no attempts (each action's 4 are spent by probes, or it stops at the
    # workflow's outer bound): so at most one probe per spent attempt, one request each
    assert 1 <= len(probes) <= RUNS * 4
    assert len(sf.requests) <= 5 + (SLOTS - 1) + len(probes)
    letters = dead_letters(store)
    assert sorted(d.workflow_id for d in letters) == sorted(h.id for h in handles)
    assert all(1 <= d.attempts <= 4 and d.connector == "salesforce" for d in letters)
    assert {d.errors[-1]["type"] for d in letters} <= {
        "ConnectorUnavailableError",
        "CircuitOpenError",
    }
    assert sf.tasks == {}

    sf.down = False  # the vendor is back: re-drive from the command line, as ops would
    ca = vendors.ca_file(tmp_path)
    cli_env = vendors.credentials() | {
        "CSAUTO_DATABASE_URL": db_url,
        "CSAUTO_CONNECTORS_PATH": str(tmp_path / "connectors"),
        "CSAUTO_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "CSAUTO_TEMPORAL_NAMESPACE": client.namespace,
        "REQUESTS_CA_BUNDLE": ca,  # the fakes' CA, as a proxy's would be configured
        "SSL_CERT_FILE": ca,
    }
    retried = await asyncio.to_thread(
        runner.invoke, app, ["dlq", "retry", "--all"], env=cli_env, terminal_width=200
    )
    assert retried.exit_code == 0, retried.output
    assert f"{RUNS} re-driven, 0 still failing" in retried.output
    keys = Counter(t[SF_KEY] for t in sf.tasks.values())
    assert keys == Counter({f"{h.id}:call": 1 for h in handles})
    assert dead_letters(store) == []

    again = vendor_connectors(vendors, store, tmp_path)  # a re-drive repeated: no new Task
    try:
        for d in dead_letters(store, None):
            redrive(activities(store, again), d.action, d.payload)
    finally:
        again.close()
    assert len(sf.tasks) == RUNS


@pytest.mark.asyncio
async def test_a_validation_error_is_dead_lettered_at_once_with_the_vendors_message(
    client: Client, vendors: Vendors, tmp_path: Path, db_url: str
) -> None:
    store = playbook_store(db_url)
    rule = "Describe the risk: high priority tasks need a Description"
    vendors.salesforce.task_rules.append(
        lambda task: (
            rule if task.get("Priority") == "High" and not task.get("Description") else None
        )
    )
    connectors = vendor_connectors(vendors, store, tmp_path)
    book = playbook(
        "invalid",
        [
            {
                "id": "call",
                "create_task": {
                    "connector": "salesforce",
                    "subject": "Call",
                    "priority": "critical",
                },
            }
        ],
    )
    try:
        [handle], _ = await run_playbooks(client, activities(store, connectors), book, 1, SLOTS)
    finally:
        connectors.close()
    [letter] = dead_letters(store)
    assert letter.workflow_id == handle.id and letter.step_id == "call"
    assert letter.attempts == 1
    assert letter.errors[-1]["type"] == "ConnectorValidationError"
    assert rule in letter.errors[-1]["message"]
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in letter.errors[-1]["message"]
    writes = list(vendors.salesforce.calls("PATCH", "/services/data/"))
    assert len(writes) == 1  # no retry


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """Every log line at DEBUG, through the handler filter the commands install."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root, quiet = logging.getLogger(), logging.getLogger("httpx")
    levels = root.level, quiet.level
    logs.install(handler, logging.DEBUG)
    yield text
    root.removeHandler(handler)
    root.setLevel(levels[0])
    quiet.setLevel(levels[1])


@pytest.mark.asyncio
async def test_no_secret_appears_in_logs_errors_dead_letters_or_histories(
    client: Client, vendors: Vendors, tmp_path: Path, db_url: str, log_text: io.StringIO
) -> None:
    store = playbook_store(db_url)
    for fake in vendors.all:
        fake.faults = Faults(0.3, seed=11)
    credentials = vendors.credentials() | {"HUBSPOT_TOKEN": "pat-na1-wrong-0000-revoked-token"}
    secrets = [*vendors.secrets(), credentials["HUBSPOT_TOKEN"]]
    connectors = vendor_connectors(
        vendors,
        store,
        tmp_path,
        env=credentials,
        timeout="0.5s",
        retry={"initial": "1s", "maximum": "5s", "attempts": 3},
    )
    book = playbook(
        "secrets",
        [
            {"id": "sf", "create_task": {"connector": "salesforce", "subject": "Call"}},
            {"id": "zd", "create_task": {"connector": "zendesk", "subject": "Tickets"}},
            {"id": "hs", "create_task": {"connector": "hubspot", "subject": "Usage"}},
            {"id": "slack", "notify": {"channel": "slack", "template": "{{ account.name }}"}},
            {"id": "hook", "notify": {"channel": "ops-hook", "template": "{{ account.id }}"}},
            {
                "id": "field",
                "update_account": {"connector": "salesforce", "field": "Health__c", "value": "red"},
            },
        ],
    )
    try:
        handles, _ = await run_playbooks(client, activities(store, connectors), book, 6, SLOTS)
    finally:
        connectors.close()
    letters = dead_letters(store)
    assert {d.step_id for d in letters} >= {"hs"}  # the revoked token: an auth failure
    assert any(f.faults.injected for f in vendors.all)
    histories = [(await h.fetch_history()).to_json() for h in handles]
    shown = await asyncio.to_thread(
        runner.invoke,
        app,
        ["dlq", "list"],
        env={"CSAUTO_DATABASE_URL": db_url},
        terminal_width=200,
    )
    seen = {
        "log lines": log_text.getvalue(),
        "dead letters": json.dumps([d.model_dump(mode="json") for d in letters]),
        "errors": "\n".join(json.dumps(d.errors) for d in letters) + shown.output,
        "workflow histories": "\n".join(histories),
    }
    assert "HTTP Request" not in seen["log lines"]  # httpx's URL lines are off
    assert len(seen["log lines"]) > 1000 and len(seen["workflow histories"]) > 1000
    for where, text in seen.items():
        for value in secrets:
            assert value not in text, f"a secret in the {where}"


def test_the_mask_hides_registered_values_in_messages_and_tracebacks() -> None:
    logs.register("s3cr3t-value-123")
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "POST %s", ("https://x/s3cr3t-value-123",), None
    )
    try:
        raise RuntimeError("token s3cr3t-value-123 refused")
    except RuntimeError as exc:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    assert logs.MaskSecrets().filter(record)
    assert record.getMessage() == "POST https://x/***"
    assert record.exc_text is not None and "s3cr3t" not in record.exc_text
    assert "token *** refused" in record.exc_text
