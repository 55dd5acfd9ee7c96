"""Failed vendor actions: retried with backoff, then kept in the dead-letter store with
everything needed to re-drive them; the playbook goes on or pauses as its step says."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from csautomation.activities.playbook import PlaybookActivities
from csautomation.connectors.base import Receipt, TaskRequest
from csautomation.connectors.local import LocalCrm
from csautomation.connectors.registry import Connectors
from csautomation.errors import ConnectorUnavailableError, ConnectorValidationError
from csautomation.facts.health import load_health_model
from csautomation.playbooks.spec import Playbook
from csautomation.store.deadletters import dead_letters
from csautomation.store.repo import Store, local_tasks
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import PlaybookInput
from factories import TODAY, playbook_store
from playbook_support import GRACEFUL_SHUTDOWN


class Flaky:
    """A CRM that fails `failures` times with `error`, then answers like the local one."""

    name = "crm"

    def __init__(self, store: Store, failures: int, error: Exception) -> None:
        self.inner = LocalCrm(store)
        self.failures = failures
        self.error = error
        self.calls = 0
        self.lock = threading.Lock()

    def create_task(self, request: TaskRequest) -> Receipt:
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise self.error
        return self.inner.create_task(request)


def playbook(on_failure: str = "continue", connector: str | None = "crm") -> Playbook:
    task = {"assignee": "owner", "subject": "Call {{ account.name }}", "connector": connector}
    return Playbook.model_validate(
        {
            "id": "dl-test",
            "name": "Dead letters",
            "owner": "cs-ops",
            "steps": [
                {
                    "id": "call",
                    "create_task": {k: v for k, v in task.items() if v is not None},
                    "on_failure": on_failure,
                },
                {"id": "done", "complete": {"outcome": "done"}},
            ],
        }
    )


async def run(
    client: Client, store: Store, crm: Flaky, pb: Playbook
) -> tuple[WorkflowHandle[PlaybookWorkflow, object], Worker]:
    acts = PlaybookActivities(
        store,
        load_health_model(),
        clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC),
        connectors=Connectors({"crm": crm}, default="crm", fallback=None),
    )
    queue = f"dl-{uuid.uuid4()}"
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[PlaybookWorkflow, EscalationWorkflow],
        activities=acts.all(),
        activity_executor=ThreadPoolExecutor(4),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )
    handle = await client.start_workflow(
        PlaybookWorkflow.run,
        PlaybookInput(playbook=pb, playbook_version=pb.version, account_id="ACME"),
        id=f"playbook:dl:{uuid.uuid4()}",
        task_queue=queue,
    )
    return handle, worker


@pytest.mark.asyncio
async def test_transient_failures_end_in_one_task(client: Client, db_url: str) -> None:
    store = playbook_store(db_url)
    crm = Flaky(store, 3, ConnectorUnavailableError("crm", "create_task", "HTTP 503", status=503))
    handle, worker = await run(client, store, crm, playbook())
    async with worker:
        result = await handle.result()
    assert result.outcome == "done" and crm.calls == 4
    assert len(local_tasks(store, handle.id)) == 1
    assert dead_letters(store) == []


@pytest.mark.asyncio
async def test_a_refused_action_goes_straight_to_the_dead_letter_store(
    client: Client, db_url: str
) -> None:
    store = playbook_store(db_url)
    refused = ConnectorValidationError(
        "crm", "create_task", "REQUIRED_FIELD_MISSING: Subject", status=400
    )
    crm = Flaky(store, 100, refused)
    handle, worker = await run(client, store, crm, playbook())
    async with worker:
        result = await handle.result()
    # on_failure: continue; the run went on to its end but did not do what it says
    assert result.outcome == "incomplete"
    assert crm.calls == 1  # never retried
    [dl] = dead_letters(store)
    assert (dl.workflow_id, dl.step_id, dl.action, dl.connector, dl.attempts) == (
        handle.id,
        "call",
        "create_task",
        "crm",
        1,
    )
    assert dl.idempotency_key == f"{handle.id}:call"
    assert dl.errors[-1]["type"] == "ConnectorValidationError"
    assert "REQUIRED_FIELD_MISSING: Subject" in dl.errors[-1]["message"]
    assert dl.errors[-1]["details"]["status"] == 400
    assert dl.payload["subject"] == "Call {{ account.name }}"
    assert [s.result for s in result.steps][0] == "dead_letter"


@pytest.mark.asyncio
async def test_a_vendor_down_exhausts_bounded_retries_then_pauses_until_redriven(
    env: WorkflowEnvironment, client: Client, db_url: str
) -> None:
    store = playbook_store(db_url)
    down = ConnectorUnavailableError("crm", "create_task", "HTTP 503", status=503)
    crm = Flaky(store, 100, down)
    handle, worker = await run(client, store, crm, playbook(on_failure="pause"))
    async with worker:
        # time skipping runs the backoff (1 + 2 + ... s) while the test waits for the pause
        while await handle.query(PlaybookWorkflow.current_step) != "call" or not dead_letters(
            store
        ):
            await env.sleep(60)
        [dl] = dead_letters(store)
        assert dl.attempts == 8 and crm.calls == 8
        assert dl.errors[-1]["type"] == "ConnectorUnavailableError"
        await env.sleep(3600)
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING  # paused
        await handle.signal(PlaybookWorkflow.redriven, "call")
        result = await handle.result()
    assert result.outcome == "done" and crm.calls == 8


@pytest.mark.asyncio
async def test_a_step_naming_no_connector_is_dead_lettered_with_the_one_it_used(
    client: Client, db_url: str
) -> None:
    """The step takes the configured default connector: its dead letter names it, so
    `connectors status` counts it (it was stored with an empty connector)."""
    store = playbook_store(db_url)
    refused = ConnectorValidationError("crm", "create_task", "FIELD_INTEGRITY", status=400)
    crm = Flaky(store, 100, refused)
    handle, worker = await run(client, store, crm, playbook(connector=None))
    async with worker:
        result = await handle.result()
    assert result.outcome == "incomplete"
    [dl] = dead_letters(store)
    assert dl.connector == "crm" and dl.payload["connector"] is None


@pytest.mark.asyncio
async def test_a_failure_naming_no_connector_is_dead_lettered_with_the_default_one(
    client: Client, db_url: str
) -> None:
    """A failure that carries no connector (not a connector's error: a timeout, a bug) on a
    step that names none: the dead letter names the connector the step would use."""
    store = playbook_store(db_url)
    crm = Flaky(store, 100, ApplicationError("unexpected", non_retryable=True))
    handle, worker = await run(client, store, crm, playbook(connector=None))
    async with worker:
        result = await handle.result()
    assert result.outcome == "incomplete"
    [dl] = dead_letters(store)
    assert dl.connector == "crm" and dl.errors[-1]["details"] == {}
