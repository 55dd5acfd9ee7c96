"""A rule match starts its workflows once, however often it is dispatched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from csautomation.dispatcher import QUEUES, dispatch
from csautomation.facts.health import load_health_model
from csautomation.rules.runtime import RuleRuntime
from csautomation.store.repo import local_tasks
from csautomation.workflows.playbook import PlaybookWorkflow
from playbook_support import PLAYBOOKS, ROOT, make_store, make_worker, server_path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server_path(), data_converter=pydantic_data_converter
    ) as e:
        yield e


@pytest.mark.asyncio(loop_scope="module")
async def test_same_match_twice_starts_one_run_on_the_priority_queue(
    env: WorkflowEnvironment, db_url: str
) -> None:
    store = make_store(db_url)
    runtime = RuleRuntime([ROOT / "rules"], load_health_model())
    at = datetime(2026, 11, 1, 12, tzinfo=UTC)
    account = store.account("ACME")
    assert account is not None
    ev = runtime.evaluate_account(
        account, store.signals_for("ACME"), at, "usage_daily", apply_cooldown=False
    )
    match = next(m for m in ev.fired if m.rule_id == "usage-decline")
    first = await dispatch(env.client, match, PLAYBOOKS)
    again = await dispatch(env.client, match, PLAYBOOKS)  # a redelivered signal
    assert [s.workflow_id for s in first] == [
        f"playbook:usage-decline:usage-recovery:ACME:{match.window}"
    ]
    assert first[0].run_id == again[0].run_id
    async with make_worker(env, store, QUEUES["high"]):
        handle = env.client.get_workflow_handle(first[0].workflow_id)
        await handle.signal(PlaybookWorkflow.cancel)
        await handle.result()
    # after the run closed, dispatching the same firing starts nothing new
    later = await dispatch(env.client, match, PLAYBOOKS)
    assert later[0].run_id is None
    assert len(local_tasks(store, first[0].workflow_id)) <= 1
    runtime.close()
