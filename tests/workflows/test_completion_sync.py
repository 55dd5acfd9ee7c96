"""Completion sync: a task completed in the vendor's CRM moves its playbook on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from csautomation.connectors.base import Completion, Receipt, TaskRequest
from csautomation.connectors.local import LocalCrm
from csautomation.connectors.registry import Connectors
from csautomation.runtime.sync import cursor, sync_completions, workflow_and_step
from csautomation.store.repo import Store
from csautomation.workflows.playbook import PlaybookWorkflow
from playbook_support import make_store, make_worker, playbook_input, server_path

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server_path(), data_converter=pydantic_data_converter
    ) as e:
        yield e


class VendorCrm:
    """A CRM that reports completions, as Salesforce, Zendesk and HubSpot do."""

    name = "crm"

    def __init__(self, store: Store) -> None:
        self.local = LocalCrm(store)
        self.done: list[Completion] = []
        self.asked: list[datetime] = []

    def create_task(self, request: TaskRequest) -> Receipt:
        return self.local.create_task(request)

    def completed_since(self, since: datetime) -> list[Completion]:
        self.asked.append(since)
        return list(self.done)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_task_completed_at_the_vendor_moves_its_playbook_on(
    env: WorkflowEnvironment, db_url: str
) -> None:
    store = make_store(db_url)
    crm = VendorCrm(store)
    connectors = Connectors({"local": crm.local, "crm": crm}, default="crm", fallback=None)
    queue = f"sync-{uuid.uuid4()}"
    worker = make_worker(env, store, queue)  # its activities create the task locally
    async with worker:
        handle = await env.client.start_workflow(
            PlaybookWorkflow.run,
            playbook_input("usage-recovery"),
            id=f"playbook:sync:{uuid.uuid4()}",
            task_queue=queue,
        )
        while await handle.query(PlaybookWorkflow.current_step) != "wait-for-call":
            await env.sleep(timedelta(minutes=1))
        assert await sync_completions(env.client, store, connectors, NOW) == 0
        assert cursor(store, "crm", NOW - timedelta(days=9)) == NOW
        crm.done.append(Completion("T-1", f"{handle.id}:outreach", NOW))
        later = NOW + timedelta(minutes=10)
        assert await sync_completions(env.client, store, connectors, later) == 1
        assert crm.asked[-1] == NOW - timedelta(minutes=5)  # from the cursor, with overlap
        while await handle.query(PlaybookWorkflow.current_step) == "wait-for-call":
            await env.sleep(timedelta(minutes=1))
        history = await handle.query(PlaybookWorkflow.step_history)
    wait = next(s for s in history if s.step_id == "wait-for-call")
    assert wait.result == "continue"  # moved on by the completion, not by its timeout
    assert wait.ended_at is not None and wait.ended_at - wait.started_at < timedelta(days=1)


def test_keys_name_their_workflow_and_step() -> None:
    assert workflow_and_step("playbook:r1:ACME:12:call") == ("playbook:r1:ACME:12", "call")
    notice = "escalation:ACME:playbook:r1:ACME:12:escalate:L2.0:salesforce:mgr-01"
    assert workflow_and_step(notice) == (
        "escalation:ACME:playbook:r1:ACME:12:escalate",
        "L2.0:salesforce:mgr-01",
    )
    assert workflow_and_step("no-colon") == ("", "")
