"""A rule match starts its workflows once, however often it is dispatched."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from temporalio.client import Client

from csautomation.facts.health import load_health_model
from csautomation.pipeline import QUEUES, dispatch
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.repo import local_tasks
from csautomation.workflows.playbook import PlaybookWorkflow
from factories import ROOT, playbook_store
from playbook_support import PLAYBOOKS, make_worker


@pytest.mark.asyncio
async def test_same_match_twice_starts_one_run_on_the_priority_queue(
    client: Client, db_url: str
) -> None:
    store = playbook_store(db_url)
    runtime = RuleRuntime([ROOT / "rules"], load_health_model())
    at = datetime(2026, 11, 1, 12, tzinfo=UTC)
    account = store.account("ACME")
    assert account is not None
    ev = runtime.evaluate_account(
        account, store.signals_for("ACME"), at, "usage_daily", apply_cooldown=False
    )
    match = next(m for m in ev.fired if m.rule_id == "usage-decline")
    first = await dispatch(client, match, PLAYBOOKS)
    again = await dispatch(client, match, PLAYBOOKS)  # a redelivered signal
    assert [s.workflow_id for s in first] == [
        f"playbook:usage-decline:usage-recovery:ACME:{match.window}"
    ]
    assert first[0].run_id == again[0].run_id
    async with make_worker(client, store, QUEUES["high"]):
        handle = client.get_workflow_handle(first[0].workflow_id)
        await handle.signal(PlaybookWorkflow.cancel)
        await handle.result()
    # after the run closed, dispatching the same firing starts nothing new
    later = await dispatch(client, match, PLAYBOOKS)
    assert later[0].run_id is None
    assert len(local_tasks(store, first[0].workflow_id)) <= 1
    runtime.close()
