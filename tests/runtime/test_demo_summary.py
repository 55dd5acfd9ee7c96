"""The demo's summary counts what the store holds, each number labelled with what it counts:
escalations opened in this run (by rules and by playbook steps alike) and escalations open
now, on a store filled with known records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from csautomation.runtime.demo import demo_result, print_summary
from csautomation.store.escalations import record_escalation
from csautomation.store.outbox import RunStart, finish_run, index_firings
from csautomation.store.repo import Store
from csautomation.workflows.types import EscalationEvent, EscalationState

SINCE = datetime(2026, 11, 1, 9, tzinfo=UTC)


def escalation(store: Store, wid: str, opened: datetime, status: str, severity: str) -> None:
    state = EscalationState(
        workflow_id=wid,
        account_id="ACME",
        severity=severity,
        status=status,
        opened_at=opened,
        timeline=[EscalationEvent(at=opened, kind="opened")],
    )
    record_escalation(store, state, seq=1)


def start(kind: str, wid: str) -> RunStart:
    return RunStart(
        wid, None, kind, "r", "p" if kind == "playbook" else "", "v1", "ACME", "high", "q"
    )


def test_the_summary_counts_every_escalation_the_store_holds(store: Store, tmp_path: Path) -> None:
    # three playbooks, two of them done; one escalation a rule started (in the runs index)
    index_firings(store, {1: [start("playbook", f"playbook:r:ACME:{i}") for i in range(3)]})
    index_firings(store, {2: [start("escalation", "escalation:r:ACME:1")]})
    for i in range(2):
        finish_run(store, f"playbook:r:ACME:{i}", "completed", SINCE)
    # the index of escalations: the rule's, two a playbook step opened (not in the runs
    # index), one resolved, and one left open by an earlier run
    escalation(store, "escalation:r:ACME:1", SINCE + timedelta(minutes=1), "open", "high")
    escalation(
        store,
        "escalation:ACME:playbook:a:s",
        SINCE + timedelta(minutes=2),
        "acknowledged",
        "critical",
    )
    escalation(
        store, "escalation:ACME:playbook:b:s", SINCE + timedelta(minutes=3), "resolved", "high"
    )
    escalation(store, "escalation:old", SINCE - timedelta(days=1), "open", "high")

    result = demo_result(store, SINCE, [], {}, "http://ui", "http://page")
    console = Console(record=True, width=120)
    print_summary(result, console, tmp_path)
    text = console.export_text()
    cells = [[c for c in line.split() if c != "│"] for line in text.splitlines()]
    workflows = {c[0]: c[1:] for c in cells if c and c[0] in ("playbook", "escalation")}
    assert workflows == {"playbook": ["3", "2", "1"], "escalation": ["3", "1", "2"]}, text
    assert "escalations opened in this run: 3, 1 of them resolved" in text
    # open now: the two of this run not resolved, and the earlier run's
    assert "3 escalations open for the managers now, in the store (2 high, 1 critical; " in text
    assert "1 acknowledged, 2 waiting)" in text
