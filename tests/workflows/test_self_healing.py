"""Connectors heal without a person: a vendor hard down for longer than the breaker's
window has every action created once within a bounded time after it comes back; a
transient dead letter is re-driven automatically while a permanent one (a 422) waits for
a person; `csauto dlq retry --all` exits 0 with nothing to retry and paces itself through
an open breaker."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from temporalio.client import Client
from typer.testing import CliRunner

from csautomation.activities.playbook import PlaybookActivities
from csautomation.cli import app
from csautomation.connectors.resilience import BreakerState
from csautomation.facts.health import load_health_model
from csautomation.playbooks.spec import Playbook
from csautomation.scheduling.config import Redrive
from csautomation.store.deadletters import DeadLetter, dead_letters, record_dead_letter
from csautomation.store.repo import Store
from csautomation.workflows.types import TaskInput
from factories import TODAY, playbook_store, vendor_connectors
from fakes.vendors import SF_KEY, Vendors
from heal_support import reporting, settle
from playbook_support import run_playbooks

RUNS = 20
SHIPPED = {"retry": {"initial": "1s", "maximum": "5m", "attempts": 8}}  # connectors/*.yaml
BREAKER = timedelta(seconds=30)  # the shipped breaker's reset_after
runner = CliRunner()

PLAYBOOK = Playbook.model_validate(
    {
        "id": "sf-down",
        "name": "Salesforce down",
        "owner": "cs-ops",
        "steps": [
            {"id": "call", "create_task": {"connector": "salesforce", "subject": "Call"}},
            {"id": "done", "complete": {"outcome": "done"}},
        ],
    }
)


@pytest.mark.asyncio
async def test_a_vendor_down_longer_than_the_breaker_window_heals_within_a_bound(
    client: Client, vendors: Vendors, tmp_path: Path, db_url: str
) -> None:
    store = playbook_store(db_url)
    sf = vendors.salesforce
    sf.down = True
    report = reporting(store)
    probes: list[BreakerState] = []

    def watch(state: BreakerState) -> None:
        report(state)
        if state.state == "half_open":
            probes.append(state)

    connectors = vendor_connectors(
        vendors,
        store,
        tmp_path,
        on_change=watch,
        timeout="2s",
        breaker={"failures": 5, "reset_after": "30s"},
        **SHIPPED,
    )
    acts = PlaybookActivities(
        store,
        load_health_model(),
        clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC),
        connectors=connectors,
    )
    try:
        handles, results = await run_playbooks(client, acts, PLAYBOOK, RUNS)
    finally:
        connectors.close()
    # on_failure: continue; a run whose action was dead-lettered is "incomplete"
    assert [r.outcome for r in results] == ["incomplete"] * RUNS
    letters = dead_letters(store)
    assert len(letters) == RUNS and sf.tasks == {}
    down_for = max(d.last_failure for d in letters) - min(d.first_failure for d in letters)
    assert down_for > BREAKER and len(probes) >= 2  # down through several breaker windows
    assert all(d.next_redrive_at is not None for d in letters)  # transient: no person

    sf.down = False  # back, right after the last failure; nobody does anything
    back = max(d.last_failure for d in letters)
    healed = settle(store, vendors, tmp_path, back)
    # the first re-drive's delay, the second's (a re-drive may meet a timeout of its own on
    # a loaded machine: 1 in 20 stress runs did) and one breaker window
    policy = Redrive()
    bound = policy.first + policy.delay(1) + BREAKER
    print(
        f"vendor down {down_for}; healed {healed.took} after it came back (bound {bound}); "
        f"re-drives {dict(healed.outcomes)}"
    )
    assert healed.left == 0 and healed.took <= bound
    assert Counter(t[SF_KEY] for t in sf.tasks.values()) == Counter(
        {f"{h.id}:call": 1 for h in handles}
    )


def _letter(key: str, errors: list[dict[str, Any]], at: datetime) -> DeadLetter:
    workflow_id, step = key.rsplit(":", 1)
    task = TaskInput(
        idempotency_key=key,
        workflow_id=workflow_id,
        step_id=step,
        account_id="ACME",
        connector="salesforce",
        assignee="owner",
        subject="Call",
        description="",
        due_at=at + timedelta(days=2),
        priority="critical" if "invalid" in key else "medium",
        context={},
    )
    return DeadLetter(
        idempotency_key=key,
        workflow_id=workflow_id,
        step_id=step,
        action="create_task",
        connector="salesforce",
        account_id="ACME",
        payload=task.model_dump(mode="json"),
        errors=errors,
        attempts=8,
        first_failure=at,
        last_failure=at,
    )


def _error(kind: str, message: str, retryable: bool) -> dict[str, Any]:
    return {
        "type": kind,
        "message": message,
        "retryable": retryable,
        "details": {"connector": "salesforce", "operation": "create_task", "sent": True},
    }


def _transient_and_permanent(store: Store, at: datetime) -> tuple[int, int]:
    outer = {"type": "ActivityError", "message": "activity failed", "retryable": True}
    transient = record_dead_letter(
        store,
        _letter(
            "playbook:p:flaky:call",
            [
                outer | {"details": {}},
                _error(
                    "ConnectorUnavailableError",
                    "salesforce create_task (HTTP 503): down (gave up after 8 attempts)",
                    False,
                ),
            ],
            at,
        ),
    )
    permanent = record_dead_letter(
        store,
        _letter(
            "playbook:p:invalid:call",
            [
                outer | {"details": {}},
                _error(
                    "ConnectorValidationError",
                    "salesforce create_task (HTTP 400): FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    False,
                ),
            ],
            at,
        ),
    )
    return transient, permanent


def test_a_transient_dead_letter_is_redriven_by_itself_a_permanent_one_waits_for_a_person(
    vendors: Vendors, tmp_path: Path, db_url: str
) -> None:
    store = playbook_store(db_url)
    sf = vendors.salesforce
    rule = "Describe the risk: high priority tasks need a Description"
    sf.task_rules.append(
        lambda task: (
            rule if task.get("Priority") == "High" and not task.get("Description") else None
        )
    )
    at = datetime.now(UTC)
    flaky, invalid = _transient_and_permanent(store, at)
    env = {"CSAUTO_DATABASE_URL": db_url, "COLUMNS": "300"}  # no cell wrapped
    listed = runner.invoke(app, ["dlq", "list"], env=env, terminal_width=200)
    assert listed.exit_code == 0, listed.output
    due = (at + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M UTC")
    assert f"auto re-drive pending at {due}" in listed.output
    assert "waiting for a person" in listed.output

    vendor_connectors(vendors, store, tmp_path).close()  # writes connectors/*.yaml
    healed = settle(store, vendors, tmp_path, at)
    assert healed.outcomes == Counter({"redriven": 1}) and healed.took == timedelta(minutes=1)
    assert [t[SF_KEY] for t in sf.tasks.values()] == ["playbook:p:flaky:call"]
    [left] = dead_letters(store)
    assert left.id == invalid and left.redrives == 0 and left.next_redrive_at is None
    shown = runner.invoke(app, ["dlq", "list", "--all"], env=env, terminal_width=200)
    assert "resolved (redriven)" in shown.output and "waiting for a person" in shown.output
    assert flaky != invalid


def test_a_redrive_that_keeps_failing_stops_at_the_maximum_age(
    vendors: Vendors, tmp_path: Path, db_url: str
) -> None:
    store = playbook_store(db_url)
    vendors.salesforce.down = True
    at = datetime.now(UTC)
    _transient_and_permanent(store, at)
    vendor_connectors(vendors, store, tmp_path).close()
    policy = Redrive(
        first=timedelta(minutes=1), maximum=timedelta(minutes=10), max_age=timedelta(hours=1)
    )
    healed = settle(store, vendors, tmp_path, at, policy)
    flaky = next(d for d in dead_letters(store) if "flaky" in d.idempotency_key)
    # 1, 2, 4, 8, 10, 10, ... minutes: tried until an hour after the failure, then a person
    assert healed.outcomes["failed"] == flaky.redrives >= 5
    assert flaky.next_redrive_at is None and healed.took <= timedelta(hours=1)
    assert len(flaky.errors) == 2 + flaky.redrives  # each re-drive's failure on the chain


def _cli_env(vendors: Vendors, tmp_path: Path, db_url: str) -> dict[str, str]:
    ca = vendors.ca_file(tmp_path)
    return vendors.credentials() | {
        "CSAUTO_DATABASE_URL": db_url,
        "CSAUTO_CONNECTORS_PATH": str(tmp_path / "connectors"),
        "CSAUTO_TEMPORAL_ADDRESS": "127.0.0.1:1",  # no Temporal: the playbooks are not told
        "REQUESTS_CA_BUNDLE": ca,
        "SSL_CERT_FILE": ca,
    }


def test_dlq_retry_all_with_nothing_to_retry_exits_0(
    vendors: Vendors, tmp_path: Path, db_url: str
) -> None:
    store = playbook_store(db_url)
    assert dead_letters(store) == []
    result = runner.invoke(app, ["dlq", "retry", "--all"], env=_cli_env(vendors, tmp_path, db_url))
    assert result.exit_code == 0, result.output
    assert "no open dead letter to retry" in result.output


class FirstFail:
    """The vendor's first `n` requests answer 503, the rest as usual."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.injected: dict[str, int] = {}
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        with self._lock:
            if self.injected.get("503", 0) >= self.n:
                return None
            self.injected["503"] = self.injected.get("503", 0) + 1
            return "503"


def _circuit_open() -> float:
    """Calls our own open breaker stopped, in this process (the CLI runs in it)."""
    labels = {"connector": "salesforce", "kind": "circuit_open"}
    return REGISTRY.get_sample_value("csauto_connector_errors_total", labels) or 0.0


def test_dlq_retry_all_waits_for_an_open_breaker_instead_of_failing_the_rest(
    vendors: Vendors, tmp_path: Path, db_url: str
) -> None:
    store = playbook_store(db_url)
    at = datetime.now(UTC)
    keys = [f"playbook:p:{i}:call" for i in range(6)]
    for key in keys:
        record_dead_letter(
            store, _letter(key, [_error("ConnectorUnavailableError", "down", True)], at)
        )
    vendor_connectors(  # the configuration the command reads: a breaker that opens at 2
        vendors, store, tmp_path, breaker={"failures": 2, "reset_after": "1s"}
    ).close()
    sf = vendors.salesforce
    # two concurrent re-drives fail (the breaker opens), then the first probe: each entry
    # meets at most two of them, within its three tries; the others wait for the breaker
    sf.faults = FirstFail(3)  # type: ignore[assignment]
    stopped = _circuit_open()
    result = runner.invoke(
        app,
        ["dlq", "retry", "--all", "--concurrency", "2"],
        env=_cli_env(vendors, tmp_path, db_url),
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "6 to retry: 6 re-driven, 0 still failing" in result.output
    assert sf.faults.injected == {"503": 3}
    assert _circuit_open() > stopped  # the breaker opened, and was waited for
    assert Counter(t[SF_KEY] for t in sf.tasks.values()) == Counter({k: 1 for k in keys})
    assert dead_letters(store) == []
