"""Sweeps: a scheduled rule over every account in batch mode, into the dispatch outbox,
with per-account cooldowns, adding nothing when run again."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from csautomation.cli import app
from csautomation.facts.health import load_health_model
from csautomation.pipeline import SqlCooldowns
from csautomation.rules.batch import BatchEvaluator
from csautomation.rules.runtime import SCHEDULE, RuleRuntime
from csautomation.scheduling.sweep import SweepError, sweep
from csautomation.store.facts import FactsReader
from csautomation.store.outbox import undispatched_firings
from csautomation.store.repo import Store
from factories import add_scheduler_accounts, scheduler_store
from scheduling.support import RULE, firings, write_rules

ROOT = Path(__file__).parents[2]
TODAY = date(2026, 11, 1)
AT = datetime(2026, 11, 1, 6, tzinfo=UTC)


@pytest.fixture
def store(store: Store) -> Store:
    return add_scheduler_accounts(store, TODAY)


@pytest.fixture
def runtime(tmp_path: Path, store: Store) -> Iterator[RuleRuntime]:
    r = RuleRuntime([write_rules(tmp_path / "rules")], load_health_model(), SqlCooldowns(store))
    yield r
    r.close()


def test_a_sweep_evaluates_every_account_and_records_firings_in_the_outbox(
    store: Store, runtime: RuleRuntime
) -> None:
    result = sweep(store, runtime, ["usage-drop"], AT)
    assert (result.accounts, result.matched, result.fired, result.suppressed) == (3, 2, 2, 0)
    assert str(result).endswith("3 accounts evaluated, 2 fired, 0 suppressed by cooldown")
    rule = runtime.ruleset.by_id("usage-drop")
    assert rule is not None
    window = int(AT.timestamp() // rule.rule.cooldown.total_seconds())
    assert firings(store) == [
        ("usage-drop", "ACME", window, None),
        ("usage-drop", "BETA", window, None),
    ]
    # the rows the dispatcher reads: as the pipeline writes them
    for row in undispatched_firings(store):
        assert (row.rule_version, row.priority) == (rule.version, "high")
        assert row.fired_at.replace(tzinfo=UTC) == AT
        assert row.actions == [a.model_dump(mode="json", by_alias=True) for a in rule.rule.actions]
        assert row.explain["matched"] is True
        # the account's health that day, kept for the review list whatever the rule read
        health = row.explain["health"]
        assert health["band"] in {"green", "yellow", "red"} and 0 <= health["score"] <= 100


def test_running_the_same_sweep_again_adds_nothing(store: Store, runtime: RuleRuntime) -> None:
    sweep(store, runtime, ["usage-drop"], AT)
    before = firings(store)
    again = sweep(store, runtime, ["usage-drop"], AT)
    assert (again.accounts, again.fired, again.suppressed) == (3, 0, 2)
    next_day = sweep(store, runtime, ["usage-drop"], AT + timedelta(days=1))
    assert (next_day.fired, next_day.suppressed) == (0, 2)  # 30 days of cooldown
    assert firings(store) == before


def test_an_account_that_fired_within_its_cooldown_is_suppressed(
    store: Store, runtime: RuleRuntime
) -> None:
    rule = runtime.ruleset.by_id("usage-drop")
    assert rule is not None
    for account_id, days_ago in (("ACME", 10), ("BETA", 40)):  # cooldown: 30 days
        at = AT - timedelta(days=days_ago)
        window = int(at.timestamp() // rule.rule.cooldown.total_seconds())
        store.record_firing("usage-drop", rule.version, account_id, window, "high", at, {})
    result = sweep(store, runtime, ["usage-drop"], AT)
    assert (result.fired, result.suppressed) == (1, 1)
    fired_now = [r.account_id for r in undispatched_firings(store) if r.fired_at.day == AT.day]
    assert fired_now == ["BETA"]


def test_the_batch_sweep_agrees_with_the_streaming_evaluation(db_url: str) -> None:
    """Every shipped scheduled rule, swept in batch mode, matches the accounts that the
    per-account (durable_rules) path matches on a schedule trigger."""
    store = scheduler_store(db_url, TODAY, falling=("ACME",))
    runtime = RuleRuntime([ROOT / "rules"], load_health_model())
    try:
        scheduled = [r.id for r in runtime.ruleset.enabled if r.rule.trigger.schedule]
        facts = FactsReader(store, runtime.model)
        streamed: set[tuple[str, str]] = set()
        for account_id in ("ACME", "STEADY"):
            found = store.account(account_id)
            assert found is not None
            record = facts.record(found, TODAY, runtime.derived)
            evaluation = runtime.evaluate_record(
                account_id, record, AT, SCHEDULE, apply_cooldown=False
            )
            streamed |= {(m.rule_id, m.account_id) for m in evaluation.fired}
        result = sweep(store, runtime, scheduled, AT)
        swept = {(r, a) for r, a, _, _ in firings(store)}
        assert swept == streamed
        assert ("usage-decline", "ACME") in swept
        assert result.fired == len(swept) and result.accounts == 2
    finally:
        runtime.close()
        store.engine.dispose()


def test_a_sweep_refuses_a_rule_it_cannot_sweep(
    tmp_path: Path, store: Store, runtime: RuleRuntime
) -> None:
    with pytest.raises(SweepError, match="no rule 'usage-dorp'.*usage-drop"):
        sweep(store, runtime, ["usage-dorp"], AT)
    folder = tmp_path / "more"
    folder.mkdir()
    event_only = RULE.replace('{schedule: "0 6 * * *"}', "{on: [usage_daily]}")
    paused = RULE.replace("usage-drop", "paused").replace(
        "cooldown:", "enabled: false\n    cooldown:"
    )
    (folder / "event.yaml").write_text(event_only)
    (folder / "paused.yaml").write_text(paused)
    other = RuleRuntime([folder], load_health_model())
    try:
        with pytest.raises(SweepError, match="has no trigger.schedule"):
            sweep(store, other, ["usage-drop"], AT)
        with pytest.raises(SweepError, match="'paused' is disabled"):
            sweep(store, other, ["paused"], AT)
    finally:
        other.close()
    assert firings(store) == []


def test_csauto_scheduler_sweep_prints_what_it_did(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CSAUTO_DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.setenv("CSAUTO_RULES_PATH", str(write_rules(tmp_path / "rules")))
    monkeypatch.setenv("CSAUTO_PLAYBOOKS_PATH", str(ROOT / "workflows"))
    runner = CliRunner()
    args = ["scheduler", "sweep", "usage-drop", "--at", "2026-11-01T06:00"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "3 accounts evaluated, 2 fired, 0 suppressed by cooldown" in first.output
    again = runner.invoke(app, args)
    assert "3 accounts evaluated, 0 fired, 2 suppressed by cooldown" in again.output
    wrong = runner.invoke(app, ["scheduler", "sweep", "nope"])
    assert wrong.exit_code == 1 and "no rule 'nope'" in wrong.output
    bad_time = runner.invoke(app, [*args[:3], "--at", "yesterday"])
    assert bad_time.exit_code == 2 and "expected an ISO date or time" in bad_time.output
    listed = runner.invoke(app, ["scheduler", "jobs", "--schedules", str(tmp_path / "none")])
    assert listed.exit_code == 1 and "no such file" in listed.output
    (tmp_path / "schedules.yaml").write_text("completion_sync: {enabled: false}\n")
    listed = runner.invoke(
        app, ["scheduler", "jobs", "--schedules", str(tmp_path / "schedules.yaml")]
    )
    assert listed.exit_code == 0, listed.output
    assert "sweep:usage-drop" in listed.output and "cron 0 6 * * *" in listed.output
    assert "completion-sync" not in listed.output
    assert "leader: none" in listed.output


def test_an_account_whose_facts_cannot_be_computed_never_stops_a_sweep(
    store: Store, runtime: RuleRuntime
) -> None:
    """A row stored unvalidated (a string where a count belongs: numpy cannot sum it) for
    one account: the sweep leaves that account out, says so, and fires for the others."""
    from sqlalchemy import insert

    from csautomation.store.engine import table
    from csautomation.store.tables import SignalRow

    at = AT - timedelta(days=1)
    with store.engine.begin() as conn:
        conn.execute(
            insert(table(SignalRow)).values(
                idempotency_key="acme-poison",
                account_id="ACME",
                type="usage_daily",
                occurred_at=at,
                payload={"logins": "5", "active_users": "x"},
                received_at=at,
            )
        )
    result = sweep(store, runtime, ["usage-drop"], AT)
    assert (result.accounts, result.unreadable, result.fired) == (2, 1, 1)
    assert [f[1] for f in firings(store)] == ["BETA"]


def test_a_sweep_sets_the_old_objects_aside_and_returns_them_to_the_collector(
    store: Store, runtime: RuleRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen: list[int] = []
    evaluate = BatchEvaluator.evaluate

    def noting(self: BatchEvaluator, cols: Any) -> Any:
        frozen.append(gc.get_freeze_count())
        return evaluate(self, cols)

    monkeypatch.setattr(BatchEvaluator, "evaluate", noting)
    assert gc.get_freeze_count() == 0
    sweep(store, runtime, ["usage-drop"], AT)
    assert frozen and all(n > 0 for n in frozen)  # set aside while the sweep ran
    assert gc.get_freeze_count() == 0  # and returned
    with pytest.raises(SweepError):
        sweep(store, runtime, ["usage-dorp"], AT)
    assert gc.get_freeze_count() == 0  # returned when a sweep fails too
