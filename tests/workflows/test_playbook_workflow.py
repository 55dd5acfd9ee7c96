"""PlaybookWorkflow on the real time-skipping test server."""

from __future__ import annotations

import os
import sysconfig
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from csautomation.activities.playbook import PlaybookActivities
from csautomation.facts.health import load_health_model
from csautomation.facts.model import Account, Signal
from csautomation.playbooks.loader import load_playbooks
from csautomation.store.repo import Store, local_tasks
from csautomation.workflows.playbook import EscalationWorkflow, PlaybookWorkflow
from csautomation.workflows.types import PlaybookInput

ROOT = Path(__file__).parents[2]
TODAY = date(2026, 11, 1)
PLAYBOOKS = load_playbooks([ROOT / "workflows"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    server = os.path.join(sysconfig.get_path("scripts"), "temporal-test-server")
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server, data_converter=pydantic_data_converter
    ) as e:
        yield e


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path}/csauto.db")
    s.create_all()
    s.upsert_accounts(
        [
            Account(
                id="ACME",
                name="Acme Corp",
                tier="enterprise",
                arr=2e5,
                seats=40,
                owner="csm-01",
                manager="mgr-01",
                renewal_date=date(2027, 2, 1),
                customer_since=date(2022, 1, 1),
            )
        ]
    )
    signals = []
    for back in range(90, -1, -1):
        logins = 100 if back > 30 else 30
        signals.append(
            Signal(
                type="usage_daily",
                account_id="ACME",
                occurred_at=datetime.combine(TODAY - timedelta(days=back), time(9), tzinfo=UTC),
                payload={"logins": logins, "active_users": logins // 4},
            )
        )
    s.add_signals(signals)
    return s


def worker(env: WorkflowEnvironment, store: Store, queue: str) -> Worker:
    acts = PlaybookActivities(
        store, load_health_model(), clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC)
    )
    return Worker(
        env.client,
        task_queue=queue,
        workflows=[PlaybookWorkflow, EscalationWorkflow],
        activities=acts.all(),
        activity_executor=ThreadPoolExecutor(4),
    )


def inp(playbook: str = "usage-recovery") -> PlaybookInput:
    pb = PLAYBOOKS[playbook]
    return PlaybookInput(
        playbook=pb,
        playbook_version=pb.version,
        account_id="ACME",
        rule_id="usage-decline",
        rule_version="abc",
    )


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
        await first.signal(PlaybookWorkflow.cancel)
        result = await first.result()
    assert result.outcome == "cancelled"
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
