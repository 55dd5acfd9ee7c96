"""`csauto connectors status` counts what the store holds: the side effects in the decision
ledger and the dead letters, per connector (a connector whose breaker never changed has
still done its work: no "no calls yet" after hundreds of calls)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.store import ledger
from csautomation.store.deadletters import (
    DeadLetter,
    record_dead_letter,
    resolve,
    save_breaker,
)
from csautomation.store.repo import Store

ROOT = Path(__file__).parents[2]
AT = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def effect(
    store: Store, connector: str, key: str, action: str = "create_task", minute: int = 0
) -> None:
    """A side effect done, as the playbook activities enter it in the ledger."""
    ledger.append_one(
        store,
        ledger.effect(
            action,
            key,
            f"playbook:r:ACME:{key}",
            "call",
            "ACME",
            connector,
            f"rec-{key}",
            created=True,
            at=AT.replace(minute=minute),
        ),
    )


def dead(store: Store, connector: str, key: str) -> int:
    return record_dead_letter(
        store,
        DeadLetter(
            idempotency_key=key,
            workflow_id=f"playbook:r:ACME:{key}",
            step_id="call",
            action="create_task",
            connector=connector,
            account_id="ACME",
            payload={},
            errors=[{"type": "ConnectorUnavailableError", "message": "HTTP 503"}],
            attempts=8,
            first_failure=AT,
            last_failure=AT,
        ),
    )


def test_status_counts_the_actions_and_dead_letters_the_store_holds(
    store: Store, db_url: str
) -> None:
    for i in range(5):
        effect(store, "local", f"t{i}", minute=i)
    effect(store, "local", "t4", minute=59)  # a retried activity writes its entry again: no new one
    effect(store, "local", "n1", action="notify", minute=7)
    effect(store, "local", "e1", action="notify_escalation", minute=8)
    effect(store, "salesforce", "s1", minute=1)
    effect(store, "salesforce", "s2", action="update_account", minute=2)
    ledger.append_one(
        store, ledger.Entry(key="x", kind="rule_fired", at=AT, connector="local")
    )  # not an action
    dead(store, "local", "d1")
    resolve(store, dead(store, "local", "d2"), "discarded")
    dead(store, "zendesk", "z1")
    save_breaker(store, "salesforce", "open", 5, "HTTP 503 [/red] \x1b[31mred")

    result = CliRunner().invoke(
        app,
        ["connectors", "status", "--database-url", db_url],
        env={"CSAUTO_CONNECTORS_PATH": str(ROOT / "connectors")},
    )
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    #                    connector  type   on  done  last action        dead  breaker
    assert rows["local"] == ["local", "local", "yes", "7", "2026-11-01", "09:08", "1/2", "closed"]
    assert rows["salesforce"][3:] == ["2", "2026-11-01", "09:02", "0/0", "open"]
    assert rows["zendesk"][3:] == ["0", "none", "yet", "1/1", "closed"]
    assert "no calls yet" not in result.output
    # the vendor's error text as written, its escape sequence shown, not sent to the terminal
    said = "salesforce: 5 failure(s) in a row; last error: HTTP 503 [/red] \\x1b[31mred"
    assert said in result.output
    assert "Counted from the store" in result.output
