"""What the playbook tests share, and the replay-history recorder with them: the shipped
playbooks, workers that run them and shut down as production's do, and a wait for what
other tasks bring about."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from csautomation.activities.escalation import EscalationActivities
from csautomation.activities.playbook import PlaybookActivities
from csautomation.escalation.matrix import load_escalation_config
from csautomation.facts.health import load_health_model
from csautomation.playbooks.loader import load_playbooks
from csautomation.playbooks.spec import Playbook
from csautomation.runtime.worker import WorkerConfig
from csautomation.store.repo import Store
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import EscalationAction, PlaybookInput, PlaybookResult
from factories import ROOT, TODAY

PLAYBOOKS = load_playbooks([ROOT / "workflows"])
HISTORIES = Path(__file__).parent / "workflows" / "histories"
# a test worker's running activities get as long to finish on shutdown as production's:
# with no time at all, a shutdown now and then never returned (runtime/worker.py)
GRACEFUL_SHUTDOWN = timedelta(seconds=WorkerConfig().graceful_shutdown_seconds)

# the account each shipped playbook is recorded against, so that it runs its steps
RECORDED_ACCOUNT = {"support-recovery": "BETA"}


def make_worker(client: Client, store: Store, queue: str) -> Worker:
    """The playbook and escalation workflows with their real activities over `store`, the
    shipped matrix and people, at noon on TODAY."""
    acts = PlaybookActivities(
        store, load_health_model(), clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC)
    )
    return Worker(
        client,
        task_queue=queue,
        workflows=[PlaybookWorkflow, EscalationWorkflow],
        activities=[*acts.all(), *escalation_activities(acts).all()],
        activity_executor=ThreadPoolExecutor(4),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


def escalation_activities(acts: PlaybookActivities) -> EscalationActivities:
    """The escalation workflow's activities on the shipped matrix and people directory."""
    matrix, people = load_escalation_config(ROOT / "escalation_matrix.yaml", ROOT / "people.yaml")
    return EscalationActivities(acts, matrix, people)


def playbook_input(playbook: str = "usage-recovery", account: str = "ACME") -> PlaybookInput:
    pb = PLAYBOOKS[playbook]
    return PlaybookInput(
        playbook=pb,
        playbook_version=pb.version,
        account_id=account,
        rule_id="usage-decline",
        rule_version="abc",
    )


async def end_escalations(
    client: Client, workflow_id: str, result: PlaybookResult, account: str = "ACME"
) -> int:
    """Resolve the escalations a finished playbook opened, and wait until they close (they
    outlive it); returns how many. Call it while the worker runs."""
    ended = 0
    for step in result.steps:
        if step.kind != "escalate":
            continue
        eid = f"escalation:{account}:{workflow_id}:{step.step_id}"
        handle = client.get_workflow_handle(eid)
        await handle.signal(EscalationWorkflow.resolve, EscalationAction(by="test", note="over"))
        assert await handle.result() == "resolved"
        ended += 1
    return ended


async def until(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Wait for a condition another task (a worker, a pipeline) brings about, up to a
    deadline."""
    deadline = asyncio.get_running_loop().time() + limit
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def run_playbooks(
    client: Client,
    acts: PlaybookActivities,
    book: Playbook,
    runs: int,
    slots: int = 4,
    accounts: Sequence[str] = ("ACME",),
) -> tuple[list[WorkflowHandle[Any, Any]], list[PlaybookResult]]:
    """`runs` runs of `book` (round the `accounts`) on a worker of their own with `slots`
    activities at once, each to its end; their handles and results, in start order."""
    queue = f"{book.id}-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[PlaybookWorkflow, EscalationWorkflow],
        activities=acts.all(),
        activity_executor=ThreadPoolExecutor(slots),
        max_concurrent_activities=slots,
        # a few workflow tasks at once: each runs sandboxed on a thread of its own, and
        # hundreds of them sharing the GIL on a busy machine took one past the SDK's 2 s
        # deadlock detector (CI's PostgreSQL pass, test_exactly_once's 500 playbooks)
        max_concurrent_workflow_tasks=8,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    ):
        handles = [
            await client.start_workflow(
                PlaybookWorkflow.run,
                PlaybookInput(
                    playbook=book, playbook_version="v1", account_id=accounts[i % len(accounts)]
                ),
                id=f"playbook:{book.id}:{i}:{uuid.uuid4()}",
                task_queue=queue,
            )
            for i in range(runs)
        ]
        # one at a time: the test server's time-skipping lock is not for concurrent waits
        results = [await h.result() for h in handles]
    return handles, results
