"""What replay and the audit trail say of a side effect: a task is created or found, an
account update is an update (it used to read "already there (deduplicated)" every time)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from csautomation.audit.story import result
from csautomation.cli.audit import entry_words
from csautomation.store import ledger

AT = datetime(2030, 3, 4, 9, 30, tzinfo=UTC)


def test_replay_says_an_account_update_was_an_update() -> None:
    made = {"connector": "salesforce", "record_id": "001A", "created": False}
    assert result("update_account", {}, made) == ["account 001A in salesforce: updated"]
    task = {"connector": "salesforce", "record_id": "00TB", "created": True}
    assert result("create_task", {}, task) == ["task 00TB in salesforce: created"]
    again = task | {"created": False}
    assert result("create_task", {}, again) == [
        "task 00TB in salesforce: already there (deduplicated)"
    ]


def test_the_audit_trail_says_an_account_update_was_an_update() -> None:
    update = ledger.effect("update_account", "k1", "wf", "s", "ACME", "salesforce", "001A", False)
    task = ledger.effect("create_task", "k2", "wf", "s", "ACME", "salesforce", "00TB", True)
    as_row = lambda e: SimpleNamespace(  # noqa: E731
        kind=e.kind, detail=e.detail, connector=e.connector, record_id=e.record_id
    )
    assert entry_words(as_row(update)) == "salesforce record 001A (updated)"
    assert entry_words(as_row(task)) == "salesforce record 00TB (created)"
