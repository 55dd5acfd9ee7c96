"""The fact records the pipeline keeps for the worker processes (store/facts_snapshots.py):
a reader that does not hold an account's day record takes the kept one, reading no history,
only when it was derived from the same day, signals, account, health model and rule facts;
otherwise it derives afresh. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from csautomation.activities.playbook import PlaybookActivities
from csautomation.facts.derive import derive
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Account, Signal
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.rules.runtime import RuleRuntime
from csautomation.store import facts as facts_module
from csautomation.store.facts import FactsReader
from csautomation.store.facts_snapshots import keep, kept
from csautomation.store.outbox import mark_all_evaluated
from csautomation.store.repo import Store
from csautomation.workflows.types import FactsInput
from factories import ROOT, TODAY, account, playbook_store
from playbook_support import PLAYBOOKS

AS_OF = date(2026, 11, 1)


def usage(day: date, logins: int, hour: int = 9) -> Signal:
    return Signal(
        type="usage_daily",
        account_id="ACME",
        occurred_at=datetime.combine(day, time(hour), UTC),
        payload={"logins": logins, "active_users": 3},
    )


@pytest.fixture
def history_reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The accounts whose signal rows each reader read, call by call."""
    calls: list[list[str]] = []
    real: Callable[..., Any] = facts_module._rows_many

    def spy(store: Store, account_ids: list[str], *args: Any) -> Any:
        calls.append(list(account_ids))
        return real(store, account_ids, *args)

    monkeypatch.setattr(facts_module, "_rows_many", spy)
    return calls


def seeded(store: Store) -> None:
    store.upsert_accounts([account()])
    for back in range(40, 0, -1):
        store.add_signal(usage(AS_OF - timedelta(days=back), 100 if back > 20 else 20))
    store.add_signal(usage(AS_OF, 15, hour=18))


def pipeline_keeps(store: Store, acct: Account) -> dict[str, Any]:
    """What the pipeline does: a record at its newest signal's moment, kept."""
    reader = FactsReader(store, load_health_model())
    [record] = reader.records_or_errors([(acct, datetime.combine(AS_OF, time(18), UTC))])
    keep(store.engine, reader.snapshots([acct.id]))
    assert isinstance(record, dict)
    return record


def test_a_worker_takes_the_kept_record_and_reads_no_history(
    store: Store, history_reads: list[list[str]]
) -> None:
    seeded(store)
    evaluated = pipeline_keeps(store, account())
    assert set(kept(store.engine, ["ACME"])) == {"ACME"}
    history_reads.clear()
    worker = FactsReader(store, load_health_model())
    record = worker.record(account(), AS_OF)
    assert history_reads == []
    model = load_health_model()
    expected = derive(account(), store.signals_for("ACME"), AS_OF, model).record()
    assert record == evaluated == expected
    assert worker.record(account(), AS_OF) == record  # held now: no further look-up
    assert history_reads == []


@pytest.mark.parametrize(
    "change",
    ["a new signal", "the account", "the health model", "the day"],
)
def test_a_record_kept_from_other_inputs_is_derived_afresh(
    store: Store, history_reads: list[list[str]], change: str
) -> None:
    seeded(store)
    pipeline_keeps(store, account())
    acct, day, model = account(), AS_OF, load_health_model()
    if change == "a new signal":
        store.add_signal(usage(AS_OF, 400, hour=10))
    elif change == "the account":
        acct = account(tier="smb", arr=2e4)
    elif change == "the health model":
        weights = model.weights.model_copy(update={"support": 20, "product_usage": 20})
        model = model.model_copy(update={"weights": weights})
    else:
        day = AS_OF + timedelta(days=1)
    history_reads.clear()
    record = FactsReader(store, model).record(acct, day)
    assert history_reads == [["ACME"]]  # derived from the history, not taken
    assert record == derive(acct, store.signals_for("ACME"), day, model).record()


def test_a_record_with_a_value_json_cannot_hold_is_not_kept(store: Store) -> None:
    seeded(store)
    reader = FactsReader(store, load_health_model())
    reader.record(account(), AS_OF)
    with reader._lock:
        held = reader._records["ACME"]
        reader._records["ACME"] = type(held)(held.key, held.derived, {"x": float("nan")})
    assert reader.snapshots(["ACME"]) == []


def test_the_pipeline_keeps_a_fired_accounts_record_for_the_playbooks_reads(
    db_url: str, history_reads: list[list[str]]
) -> None:
    store = playbook_store(db_url)
    mark_all_evaluated(store)
    model = load_health_model()
    runtime = RuleRuntime([ROOT / "rules"], model, cooldowns=SqlCooldowns(store))
    p = Pipeline(store, runtime, PLAYBOOKS, client=None)  # type: ignore[arg-type]
    p.add_signal(usage(TODAY, 30, hour=18))
    assert p.evaluate_pending() == 1
    runtime.close()
    assert set(kept(store.engine, ["ACME"])) == {"ACME"}  # it fired: usage-decline
    # a worker process: its own reader, the activity the playbook's goal check runs
    history_reads.clear()
    end_of_today = datetime.combine(TODAY, time(23, 59), UTC)
    worker = PlaybookActivities(store, model, clock=lambda: end_of_today)
    facts = worker.read_account_facts(FactsInput(account_id="ACME"))
    assert history_reads == []
    acct = store.account("ACME")
    assert acct is not None
    expected = derive(acct, store.signals_for("ACME"), TODAY, model).record()
    assert {k: facts[k] for k in expected} == expected  # and the rules' derived facts
