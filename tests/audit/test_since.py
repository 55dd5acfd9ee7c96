"""Issue 20: `csauto audit --since` counts when entries were recorded, not the signals' time.
A signal 40 days old arrives today (late, or back-filled) and fires a rule: the firing is
recorded today, so `--since 30d` lists it; `--business-time` counts the signal's time and
leaves it out. Both times are printed. On SQLite and PostgreSQL (the business time is
compared inside the entry's JSON detail)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.store import ledger
from csautomation.store.ledger import Query, entries
from csautomation.store.repo import Store
from factories import account

RULES = """\
rules:
  - id: escalated
    name: Escalated
    owner: cs-ops@example.com
    priority: high
    trigger: {on: [support_escalation]}
    conditions:
      signals: {of: [support_escalation], at_least: 1, within: 1d}
    cooldown: 1h
    actions:
      - create_task: {subject: "Call {{ account.name }}"}
"""


@pytest.fixture
def runtime(tmp_path: Path, store: Store) -> Iterator[RuleRuntime]:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "escalated.yaml").write_text(RULES)
    model = load_health_model()
    r = RuleRuntime([tmp_path / "rules"], model, SqlCooldowns(store), reload_interval=3600)
    yield r
    r.close()


def audit(db_url: str, *args: str) -> str:
    result = CliRunner().invoke(
        app, ["audit", *args, "--database-url", db_url], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_a_firing_recorded_today_for_a_signal_40_days_old(
    store: Store, runtime: RuleRuntime, db_url: str
) -> None:
    now = datetime.now(UTC)
    old = (now - timedelta(days=40)).replace(microsecond=123456)
    store.upsert_accounts([account()])
    store.add_signal(
        Signal(
            type="support_escalation",
            account_id="ACME",
            occurred_at=old,
            payload={"reason": "outage"},
        )
    )
    pipeline = Pipeline(store, runtime, {}, client=None)  # type: ignore[arg-type]
    before = datetime.now(UTC)
    assert pipeline.evaluate_pending() == 1
    [fired] = entries(store, Query(kinds=["rule_fired"]))
    assert before <= fired.at <= datetime.now(UTC)  # recorded now, by the pass
    assert fired.business_at == old  # the signal's time, which the rule was evaluated at
    # a side effect recorded now: its business time is its recorded time
    ledger.append_one(
        store, ledger.effect("create_task", "k", "wf", "call", "ACME", "local", "7", True)
    )

    def kinds(**q: object) -> list[str]:
        return [e.kind for e in entries(store, Query(**q))]  # type: ignore[arg-type]

    month, fifty = now - timedelta(days=30), now - timedelta(days=50)
    assert kinds(since=month) == ["rule_fired", "create_task"]
    assert kinds(since=month, business_time=True) == ["create_task"]
    assert kinds(since=fifty, business_time=True) == ["rule_fired", "create_task"]
    assert kinds(until=month, business_time=True) == ["rule_fired"]
    assert kinds(until=month) == []
    # to the microsecond, on both databases: at the signal's instant it is in, after it out
    assert kinds(since=old, business_time=True) == ["rule_fired", "create_task"]
    later = old + timedelta(microseconds=1)
    assert kinds(since=later, business_time=True) == ["create_task"]

    shown = audit(db_url, "--since", "30d")
    row = next(line for line in shown.splitlines() if "rule_fired" in line)
    assert f"{fired.at:%Y-%m-%d %H:%M:%S}" in row  # recorded
    assert f"{old:%Y-%m-%d %H:%M:%S}" in row  # business time
    assert "2 entries" in shown
    shown = audit(db_url, "--since", "30d", "--business-time")
    assert "rule_fired" not in shown and "1 entries" in shown
    assert "rule_fired" in audit(db_url, "--since", "41d", "--business-time")

    lines = [json.loads(x) for x in audit(db_url, "--since", "30d", "--jsonl", "-").splitlines()]
    firing = next(x for x in lines if x["kind"] == "rule_fired")
    assert firing["business_at"] == old.isoformat()
    assert firing["at"] == fired.at.isoformat()
