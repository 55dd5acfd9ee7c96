"""No stored row can stop evaluation: rows stored before validation was strict, by an older
version or by hand, are held in the quarantine with why, and every other account goes on."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client

from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.pipeline import Pipeline, SqlCooldowns
from csautomation.pipeline.loop import backoff
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.engine import table
from csautomation.store.outbox import (
    mark_all_evaluated,
    pending_signals,
    runs,
    undispatched_firings,
)
from csautomation.store.quarantine import held
from csautomation.store.repo import Store
from csautomation.store.tables import SignalRow
from factories import ROOT, TODAY, account, playbook_store
from playbook_support import PLAYBOOKS

NOON = datetime.combine(TODAY, time(12), tzinfo=UTC)


def pipeline(store: Store, client: Client) -> Pipeline:
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(store))
    return Pipeline(store, runtime, PLAYBOOKS, client)


def store_raw(store: Store, key: str, account_id: str, payload: Any, **row: Any) -> None:
    """A row as an older version or a hand-written SQL insert stored it: not validated."""
    values = {
        "idempotency_key": key,
        "account_id": account_id,
        "type": "usage_daily",
        "occurred_at": NOON,
        "payload": payload,
        "received_at": NOON,
        **row,
    }
    with store.engine.begin() as conn:
        conn.execute(insert(table(SignalRow)).values(**values))


def errors(step: str) -> float:
    return REGISTRY.get_sample_value("csauto_pipeline_pass_errors_total", {"step": step}) or 0.0


def poisoned_store(db_url: str) -> Store:
    """ACME's valid signal of today, which fires usage-decline, behind poison rows for
    three other accounts (and a valid signal of one of them)."""
    store = playbook_store(db_url)
    store.upsert_accounts([account(id="GAMMA"), account(id="DELTA")])
    mark_all_evaluated(store)  # the history is context, not news
    store_raw(store, "beta-string-logins", "BETA", {"logins": "5", "active_users": "2"})
    store_raw(
        store,
        "gamma-year-1",
        "GAMMA",
        {"logins": 5, "active_users": 2},
        occurred_at=datetime(1, 1, 1),
    )
    store_raw(store, "delta-list", "DELTA", ["logins", 5])
    store_raw(store, "delta-no-type", "DELTA", {}, type="no_such_type")
    store.add_signal(
        Signal(
            type="support_escalation",
            account_id="BETA",
            occurred_at=NOON,
            payload={"reason": "outage"},
            idempotency_key="beta-valid",
        )
    )
    store.add_signal(
        Signal(
            type="usage_daily",
            account_id="ACME",
            occurred_at=datetime.combine(TODAY, time(18), tzinfo=UTC),
            payload={"logins": 30, "active_users": 7},
            idempotency_key="acme-today",
        )
    )
    return store


@pytest.mark.asyncio
async def test_poison_rows_are_held_and_every_other_account_is_evaluated(
    client: Client, db_url: str
) -> None:
    store = poisoned_store(db_url)
    failed_before = errors("evaluate")
    p = pipeline(store, client)
    evaluated, dispatched = await p.run_once()
    assert evaluated == 6 and dispatched >= 1
    started = [r for r in runs(store) if r.workflow_id.startswith("playbook:usage-decline:")]
    assert [r.account_id for r in started] == ["ACME"] and started[0].run_id is not None

    items = {r.signal_key: r for r in held(store, source="pipeline")}
    assert set(items) == {
        "beta-string-logins",
        "beta-valid",
        "gamma-year-1",
        "delta-list",
        "delta-no-type",
    }
    for key, item in items.items():
        [error] = item.errors
        assert error["message"] and "Traceback" not in error["message"], key
        assert json.loads(item.raw)["idempotency_key"] == key
    # the poison itself is named as the cause; its account's valid signal says whose facts
    # fail (a strict model may refuse the string numbers as invalid before deriving)
    beta = items["beta-string-logins"].errors[0]["message"]
    assert beta.startswith(("facts cannot be computed from this signal: ", "the stored signal"))
    assert (
        items["beta-valid"]
        .errors[0]["message"]
        .startswith("facts cannot be computed for account BETA: ")
    )
    assert json.loads(items["beta-valid"].raw)["account_id"] == "BETA"
    gamma = items["gamma-year-1"].errors[0]["message"]
    assert gamma.startswith("facts cannot be computed from this signal: "), gamma
    assert json.loads(items["gamma-year-1"].raw)["occurred_at"].startswith("0001-01-01")
    assert "the stored signal is not valid: type" in items["delta-no-type"].errors[0]["message"]
    assert items["delta-list"].errors[0]["message"].startswith(("facts", "the stored signal"))

    # nothing is left to retry, and no pass failed
    assert pending_signals(store) == []
    assert await p.run_once() == (0, 0)
    assert errors("evaluate") == failed_before
    p.runtime.close()


@pytest.mark.asyncio
async def test_a_pass_that_fails_whole_is_retried_with_backoff() -> None:
    """The store down: each failed pass is counted, and the next waits twice as long."""
    waits: list[float] = []
    failing = 5

    async def evaluate_pending_async() -> int:
        if len(waits) < failing:
            raise ConnectionError("the database is down")
        raise asyncio.CancelledError  # up again: end the test's loop here

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    before = errors("evaluate")
    with pytest.raises(asyncio.CancelledError):
        await Pipeline._loop(evaluate_pending_async, asyncio.Event(), None, 2.0, sleep)
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert errors("evaluate") == before + failing
    assert backoff(7, 2.0) == 60.0 and backoff(1000, 2.0) == 60.0  # capped
    assert backoff(1, 0.0) > 0  # a zero poll interval still never spins


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"logins": 1}
    for _ in range(depth):
        value = {"x": value}
    return value


# every poison kind a stored row can hold (a database may refuse some: then it cannot be
# stored, which is its own protection): payloads the intake once stored as they came
POISON: dict[str, dict[str, Any]] = {
    "string-numbers": {"payload": {"logins": "5", "active_users": "2"}},
    "booleans": {"payload": {"logins": True, "active_users": False}},
    "infinity": {"payload": {"logins": float("inf"), "active_users": 2}},
    "huge-int": {"payload": {"logins": 10**1000, "active_users": 2}},
    "year-1": {"payload": {"logins": 5, "active_users": 2}, "occurred_at": datetime(1, 1, 1)},
    "nested": {"payload": {"logins": nested(200), "active_users": 2}},
    "wrong-type": {"payload": [5, 2]},
}


def test_a_thousand_valid_signals_are_all_evaluated_among_every_poison_kind(
    db_url: str,
) -> None:
    accounts = [f"OK{i:02d}" for i in range(50)]
    store = playbook_store(db_url)
    store.upsert_accounts([account(id=a) for a in [*accounts, *(f"P-{k}" for k in POISON)]])
    mark_all_evaluated(store)
    stored_poison: list[str] = []
    for i in range(1000):
        when = NOON - timedelta(minutes=i)
        store.add_signal(
            Signal(
                type="usage_daily",
                account_id=accounts[i % 50],
                occurred_at=when,
                payload={"logins": 10 + i % 7, "active_users": 3},
                idempotency_key=f"valid-{i}",
            )
        )
        if i % 140 == 70:  # interleaved: a poison row every 140 valid ones
            kind = list(POISON)[i // 140]
            try:
                store_raw(store, f"poison-{kind}", f"P-{kind}", **POISON[kind])
            except (SQLAlchemyError, ValueError):  # e.g. PostgreSQL's JSON refuses Infinity
                continue
            stored_poison.append(f"poison-{kind}")
    assert len(stored_poison) >= 5

    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(store))
    p = Pipeline(store, runtime, PLAYBOOKS, client=None, batch=300)  # evaluating: no Temporal
    failed_before = errors("evaluate")
    passes = 0
    while p.evaluate_pending():
        passes += 1
    assert passes == -(-(1000 + len(stored_poison)) // 300)  # no pass repeated
    assert errors("evaluate") == failed_before
    t = table(SignalRow)
    with store.engine.connect() as conn:
        unevaluated = conn.execute(select(t.c.idempotency_key).where(t.c.evaluated_at.is_(None)))
        assert list(unevaluated) == []
    items = {r.signal_key: r.errors[0]["message"] for r in held(store, source="pipeline")}
    # no valid signal held; the poison whose facts fail held (alone in its account, a
    # string or a boolean may still derive: test_poison_rows_... shows them in a history)
    assert set(items) <= set(stored_poison)
    assert {"poison-huge-int", "poison-year-1", "poison-nested", "poison-wrong-type"} <= set(items)
    assert all(m.startswith(("facts cannot", "the stored signal")) for m in items.values())
    assert p.counts.evaluated == 1000 + len(stored_poison) - len(items)
    runtime.close()


def test_an_account_whose_rules_fail_midway_is_held_and_fires_nothing(db_url: str) -> None:
    """Its rules matched (and recorded a firing in the pass) before failing: that firing is
    not committed, its signals are held, and the other accounts fire as usual."""
    store = playbook_store(db_url)
    mark_all_evaluated(store)
    for account_id in ("ACME", "BETA"):
        store.add_signal(
            Signal(
                type="usage_daily",
                account_id=account_id,
                occurred_at=datetime.combine(TODAY, time(18), tzinfo=UTC),
                payload={"logins": 30, "active_users": 7},
                idempotency_key=f"{account_id}-today",
            )
        )
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(store))
    evaluate = runtime.evaluate_records

    def failing_for_beta(items: Any, *args: Any, **kwargs: Any) -> Any:
        done = evaluate(items, *args, **kwargs)
        beta = [i for i, item in enumerate(items) if item.account_id == "BETA"]
        assert [done[i].fired != () for i in beta] == [True]  # it matched, the pass recorded it
        done[beta[0]] = RuntimeError("a rule's condition failed\non this record")
        return done

    runtime.evaluate_records = failing_for_beta  # type: ignore[method-assign]
    p = Pipeline(store, runtime, PLAYBOOKS, client=None)
    assert p.evaluate_pending() == 2
    fired = {(f.account_id, f.rule_id) for f in undispatched_firings(store)}
    assert ("ACME", "usage-decline") in fired
    assert not any(a == "BETA" for a, _ in fired)
    [item] = held(store, source="pipeline")
    assert item.signal_key == "BETA-today"
    assert item.errors[0]["message"] == (
        "rules cannot be evaluated for account BETA: "
        "RuntimeError: a rule's condition failed on this record"
    )
    runtime.close()
