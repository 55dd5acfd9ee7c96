"""PlaybookWorkflow on the real time-skipping test server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from csautomation.store.repo import Store, local_tasks
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import PlaybookInput
from playbook_support import end_escalations, make_store, make_worker, playbook_input, server_path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server_path(), data_converter=pydantic_data_converter
    ) as e:
        yield e


@pytest.fixture
def store(db_url: str) -> Store:
    return make_store(db_url)


def worker(env: WorkflowEnvironment, store: Store, queue: str) -> Worker:
    return make_worker(env, store, queue)


def inp() -> PlaybookInput:
    return playbook_input()


@pytest.mark.asyncio(loop_scope="module")
async def test_weeks_of_waiting_finish_in_seconds_and_tasks_are_created_once(
    env: WorkflowEnvironment, store: Store
) -> None:
    queue = f"q-{uuid.uuid4()}"
    async with worker(env, store, queue):
        handle = await env.client.start_workflow(
            PlaybookWorkflow.run,
            inp(),
            id=f"playbook:usage-decline:ACME:{uuid.uuid4()}",
            task_queue=queue,
        )
        # nobody completes the outreach task: after 7 days it escalates, and ends escalated
        result = await handle.result()
        assert await end_escalations(env, handle.id, result) == 1  # opened, still open
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


@pytest.mark.asyncio(loop_scope="module")
async def test_task_completed_signal_moves_the_playbook_on(
    env: WorkflowEnvironment, store: Store
) -> None:
    queue = f"q-{uuid.uuid4()}"
    async with worker(env, store, queue):
        handle = await env.client.start_workflow(
            PlaybookWorkflow.run,
            inp(),
            id=f"playbook:usage-decline:ACME:{uuid.uuid4()}",
            task_queue=queue,
        )
        await handle.signal(PlaybookWorkflow.task_completed, "outreach")
        result = await handle.result()
        await end_escalations(env, handle.id, result)
    steps = [s.step_id for s in result.steps]
    # the call happened, usage is still down after two weeks: branch to escalate
    assert steps[:4] == ["outreach", "wait-for-call", "give-it-time", "check-recovery"]
    assert result.outcome == "escalated"


@pytest.mark.asyncio(loop_scope="module")
async def test_the_same_workflow_id_starts_one_run(env: WorkflowEnvironment, store: Store) -> None:
    queue = f"q-{uuid.uuid4()}"
    wf_id = f"playbook:usage-decline:ACME:{uuid.uuid4()}"
    async with worker(env, store, queue):
        first = await env.client.start_workflow(
            PlaybookWorkflow.run,
            inp(),
            id=wf_id,
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        second = await env.client.start_workflow(
            PlaybookWorkflow.run,
            inp(),
            id=wf_id,
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        assert first.result_run_id == second.result_run_id
        result = await first.result()  # nobody calls: it escalates, once
        assert await end_escalations(env, wf_id, result) == 1
    assert result.outcome == "escalated"
    assert len(local_tasks(store, wf_id)) == 1


@pytest.mark.asyncio(loop_scope="module")
async def test_unknown_account_fails_without_retrying_forever(
    env: WorkflowEnvironment, store: Store
) -> None:
    queue = f"q-{uuid.uuid4()}"
    bad = inp().model_copy(update={"account_id": "NOPE"})
    async with worker(env, store, queue):
        with pytest.raises(WorkflowFailureError):
            await env.client.execute_workflow(
                PlaybookWorkflow.run, bad, id=f"p:{uuid.uuid4()}", task_queue=queue
            )
