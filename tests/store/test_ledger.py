"""The decision ledger on SQLite and PostgreSQL: each writer adds its entry once however
often it runs again, and the database itself refuses to change or remove one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from csautomation.store import ledger
from csautomation.store.deadletters import DeadLetter, record_dead_letter, resolve
from csautomation.store.escalations import record_escalation
from csautomation.store.outbox import RunStart, commit_evaluation, finish_run, index_firings
from csautomation.store.repo import Store
from csautomation.workflows.types import EscalationEvent, EscalationState

AT = datetime(2026, 11, 1, 9, tzinfo=UTC)
RULE = {"id": "usage-decline", "when": {"all": ["usage.logins_change_30d_pct <= -30"]}}


def firing(window: int = 7) -> dict[str, object]:
    return {
        "rule_id": "usage-decline",
        "rule_version": "v1",
        "account_id": "ACME",
        "window": window,
        "priority": "high",
        "fired_at": AT,
        "explain": {"matched": True, "facts": {"usage.logins_change_30d_pct": -70.0}},
        "actions": [{"start_playbook": "usage-recovery"}],
    }


def kinds(store: Store, **query: object) -> list[str]:
    return [e.kind for e in ledger.entries(store, ledger.Query(**query))]  # type: ignore[arg-type]


def test_a_firing_and_its_rule_version_are_kept_once(store: Store) -> None:
    assert commit_evaluation(store, [firing()], [], AT, {"v1": ("usage-decline", RULE)}) == 1
    assert commit_evaluation(store, [firing()], [], AT, {"v1": ("usage-decline", RULE)}) == 0
    [entry] = ledger.entries(store, ledger.Query(account_id="ACME"))
    assert entry.kind == "rule_fired" and entry.rule_version == "v1"
    assert entry.detail["explain"]["facts"] == {"usage.logins_change_30d_pct": -70.0}
    assert entry.at == AT and entry.firing_id is not None
    assert ledger.rule_source(store, "v1") == RULE


def test_a_run_its_effects_and_its_end_are_entered_once(store: Store) -> None:
    commit_evaluation(store, [firing()], [], AT)
    [fired] = ledger.entries(store)
    wf = "playbook:usage-decline:usage-recovery:ACME:7"
    run = RunStart(
        wf, None, "playbook", "usage-decline", "usage-recovery", "pb1", "ACME", "high", "q"
    )
    for _ in range(2):  # a dispatcher retried after a crash
        index_firings(
            store, {fired.firing_id or 0: [run]}, {"pb1": ("usage-recovery", {"id": "x"})}
        )
        ledger.append_one(
            store,
            ledger.effect(
                "create_task", f"{wf}/outreach", wf, "outreach", "ACME", "salesforce", "00T1", True
            ),
        )
        finish_run(store, wf, "recovered", datetime.now(UTC) + timedelta(days=3))
    assert kinds(store, workflow_id=wf) == ["workflow_started", "create_task", "workflow_closed"]
    closed = ledger.entries(store, ledger.Query(workflow_id=wf, kinds=["workflow_closed"]))[0]
    assert closed.account_id == "ACME" and closed.detail["outcome"] == "recovered"
    assert ledger.playbook_source(store, "pb1") == {"id": "x"}


def test_escalation_changes_and_dead_letters_are_entered_once_each(store: Store) -> None:
    wf = "escalation:sharp-health-drop:ACME:7"
    events = [EscalationEvent(at=AT, kind="opened")]
    state = EscalationState(
        workflow_id=wf, account_id="ACME", severity="high", opened_at=AT, timeline=events
    )
    record_escalation(store, state, 1)
    events.append(EscalationEvent(at=AT + timedelta(hours=1), kind="acknowledged", by="mgr-01"))
    record_escalation(store, state.model_copy(update={"timeline": events}), 2)
    record_escalation(store, state.model_copy(update={"timeline": events}), 2)  # retried
    changes = ledger.entries(store, ledger.Query(workflow_id=wf))
    assert [(e.detail["event"], e.detail["by"]) for e in changes] == [
        ("opened", "system"),
        ("acknowledged", "mgr-01"),
    ]
    dl = DeadLetter(
        idempotency_key="wf/step",
        workflow_id="wf",
        step_id="step",
        action="create_task",
        connector="zendesk",
        account_id="ACME",
        payload={},
        errors=[{"message": "503"}],
        attempts=5,
        first_failure=AT,
        last_failure=AT,
    )
    row_id = record_dead_letter(store, dl)
    record_dead_letter(store, dl)  # a retried workflow task records it again
    assert resolve(store, row_id, "redriven", "42")
    assert kinds(store, workflow_id="wf") == ["dead_lettered", "redriven"]


def test_the_database_refuses_to_change_or_remove_an_entry(store: Store) -> None:
    commit_evaluation(store, [firing()], [], AT)
    for statement in (
        "UPDATE decision_ledger SET account_id = 'OTHER'",
        "DELETE FROM decision_ledger",
    ):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    assert [e.account_id for e in ledger.entries(store)] == ["ACME"]
