"""From a stored signal to a started workflow, exactly once, across duplicates and crashes."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from temporalio.client import Client

from csautomation.facts.health import load_health_model
from csautomation.facts.model import Signal
from csautomation.pipeline import Firing, Pipeline, SqlCooldowns, plan, start
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.outbox import mark_all_evaluated, runs, undispatched_firings
from csautomation.store.repo import Store
from factories import ROOT, TODAY, playbook_store
from playbook_support import PLAYBOOKS


def pipeline(store: Store, client: Client) -> Pipeline:
    """A fresh pipeline, as after a restart: nothing but the store carries over."""
    runtime = RuleRuntime([ROOT / "rules"], load_health_model(), cooldowns=SqlCooldowns(store))
    return Pipeline(store, runtime, PLAYBOOKS, client)


def todays_signal() -> Signal:
    return Signal(
        type="usage_daily",
        account_id="ACME",
        occurred_at=datetime.combine(TODAY, time(18), tzinfo=UTC),
        payload={"logins": 30, "active_users": 7},
        idempotency_key="acme-today",
    )


def usage_runs(store: Store) -> list[tuple[str, str | None]]:
    return [
        (r.workflow_id, r.run_id)
        for r in runs(store)
        if r.workflow_id.startswith("playbook:usage-decline:usage-recovery:ACME:")
    ]


@pytest.mark.asyncio
async def test_a_signal_delivered_twice_starts_its_playbook_once(
    client: Client, db_url: str
) -> None:
    store = playbook_store(db_url)
    mark_all_evaluated(store)  # the history is context, not news
    p = pipeline(store, client)
    assert p.add_signal(todays_signal()) is True
    assert p.add_signal(todays_signal()) is False  # the same delivery again
    evaluated, dispatched = await p.run_once()
    assert evaluated == 1 and dispatched >= 1  # usage-decline, and red-health with it
    assert await p.run_once() == (0, 0)
    started = usage_runs(store)
    assert len(started) == 1 and started[0][1] is not None
    handle = client.get_workflow_handle(started[0][0])
    assert (await handle.describe()).run_id == started[0][1]
    assert undispatched_firings(store) == []
    p.runtime.close()


@pytest.mark.asyncio
async def test_a_batch_delivered_twice_is_stored_once_and_wakes_the_loop(
    client: Client, db_url: str
) -> None:
    store = playbook_store(db_url)
    mark_all_evaluated(store)
    p = pipeline(store, client)
    other = todays_signal().model_copy(update={"idempotency_key": "acme-today-2"})
    assert p.add_signals([todays_signal(), other]) == {"acme-today", "acme-today-2"}
    assert p.wake.is_set()  # the loop looks at once, not at its next poll
    p.wake.clear()
    assert p.add_signals([todays_signal(), other]) == set()  # the same batch again
    assert p.add_signal(todays_signal()) is False
    evaluated, _ = await p.run_once()
    assert evaluated == 2
    assert len(usage_runs(store)) == 1
    p.runtime.close()


@pytest.mark.asyncio
async def test_a_crash_between_evaluation_and_dispatch_starts_the_workflow_once(
    client: Client, db_url: str
) -> None:
    store = playbook_store(db_url)
    mark_all_evaluated(store)
    first = pipeline(store, client)
    first.add_signal(todays_signal())
    assert first.evaluate_pending() == 1  # ... and the process dies before dispatching
    first.runtime.close()
    [row] = [r for r in undispatched_firings(store) if r.rule_id == "usage-decline"]
    assert row.dispatched_at is None

    # a second crash: this time after the workflow started, before the outbox knew
    second = pipeline(store, client)
    firing = Firing(
        rule_id=row.rule_id,
        rule_version=row.rule_version,
        account_id=row.account_id,
        window=row.window,
        priority=row.priority,
        at=row.fired_at,
        actions=tuple(row.actions),
        explain=row.explain,
    )
    started = [await start(client, p) for p in plan(firing, PLAYBOOKS)]
    second.runtime.close()

    third = pipeline(store, client)
    pending = len(undispatched_firings(store))
    assert await third.run_once() == (0, pending)
    assert undispatched_firings(store) == []
    [(wf_id, run_id)] = usage_runs(store)
    assert run_id == started[0].run_id  # the run the crashed attempt started, not a second
    assert wf_id == started[0].workflow_id
    third.runtime.close()


def test_each_firing_keeps_the_accounts_health_when_it_was_evaluated(db_url: str) -> None:
    """Whether or not its rule read health, a firing keeps the score and band its account
    had when it was evaluated: the review list shows it beside today's."""
    store = playbook_store(db_url)
    mark_all_evaluated(store)
    p = pipeline(store, client=None)  # type: ignore[arg-type]  # evaluation only
    p.add_signal(todays_signal())
    assert p.evaluate_pending() == 1
    p.runtime.close()
    rows = {r.rule_id: r for r in undispatched_firings(store)}
    usage, drop = rows["usage-decline"], rows["sharp-health-drop"]
    assert "health.band" not in drop.explain["facts"]  # it reads the score's fall only
    kept = drop.explain["health"]
    assert kept["band"] in {"green", "yellow", "red"} and 0 <= kept["score"] <= 100
    # the same numbers another rule read in the same evaluation
    assert usage.explain["health"] == kept
    assert kept["score"] == usage.explain["facts"]["health.score"]
