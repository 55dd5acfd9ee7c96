"""PlaybookWorkflow on the real time-skipping test server."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from csautomation.store.repo import Store, local_tasks
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import PlaybookInput
from factories import add_playbook_accounts
from playbook_support import end_escalations, make_worker, playbook_input


@pytest.fixture
def store(store: Store) -> Store:
    return add_playbook_accounts(store)


def worker(client: Client, store: Store, queue: str) -> Worker:
    return make_worker(client, store, queue)


def inp() -> PlaybookInput:
    return playbook_input()


@pytest.mark.asyncio
async def test_weeks_of_waiting_finish_in_seconds_and_tasks_are_created_once(
    client: Client, store: Store
) -> None:
    queue = f"q-{uuid.uuid4()}"
    async with worker(client, store, queue):
        handle = await client.start_workflow(
            PlaybookWorkflow.run,
            inp(),
            id=f"playbook:usage-decline:ACME:{uuid.uuid4()}",
            task_queue=queue,
        )
        # nobody completes the outreach task: after 7 days it escalates, and ends escalated
        result = await handle.result()
        assert await end_escalations(client, handle.id, result) == 1  # opened, still open
    assert result.outcome == "escalated"
    assert [s.step_id for s in result.steps] == [
        "outreach",
        "wait-for-call",
        "escalate",
        "not-recovered",
    ]
    tasks = local_tasks(store, handle.id)
    assert len(tasks) == 1 and tasks[0].assignee == "csm-01"
    assert tasks[0].subject == "Usage is down at Acme Corp: call the champion"
    assert "-70" in tasks[0].description or "%" in tasks[0].description


@pytest.mark.asyncio
async def test_task_completed_signal_moves_the_playbook_on(client: Client, store: Store) -> None:
    queue = f"q-{uuid.uuid4()}"
    async with worker(client, store, queue):
        handle = await client.start_workflow(
            PlaybookWorkflow.run,
            inp(),
            id=f"playbook:usage-decline:ACME:{uuid.uuid4()}",
            task_queue=queue,
        )
        await handle.signal(PlaybookWorkflow.task_completed, "outreach")
        result = await handle.result()
        await end_escalations(client, handle.id, result)
    steps = [s.step_id for s in result.steps]
    # the call happened, usage is still down after two weeks: branch to escalate
    assert steps[:4] == ["outreach", "wait-for-call", "give-it-time", "check-recovery"]
    assert result.outcome == "escalated"


@pytest.mark.asyncio
async def test_the_same_workflow_id_starts_one_run(client: Client, store: Store) -> None:
    queue = f"q-{uuid.uuid4()}"
    wf_id = f"playbook:usage-decline:ACME:{uuid.uuid4()}"
    async with worker(client, store, queue):
        first = await client.start_workflow(
            PlaybookWorkflow.run,
            inp(),
            id=wf_id,
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        second = await client.start_workflow(
            PlaybookWorkflow.run,
            inp(),
            id=wf_id,
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        assert first.result_run_id == second.result_run_id
        result = await first.result()  # nobody calls: it escalates, once
        assert await end_escalations(client, wf_id, result) == 1
    assert result.outcome == "escalated"
    assert len(local_tasks(store, wf_id)) == 1


@pytest.mark.asyncio
async def test_unknown_account_fails_without_retrying_forever(client: Client, store: Store) -> None:
    queue = f"q-{uuid.uuid4()}"
    bad = inp().model_copy(update={"account_id": "NOPE"})
    async with worker(client, store, queue):
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(
                PlaybookWorkflow.run, bad, id=f"p:{uuid.uuid4()}", task_queue=queue
            )
