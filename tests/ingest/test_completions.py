"""Completion sync: a task completed in the vendor's CRM moves its playbook on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from csautomation.audit.timeline import timeline
from csautomation.connectors.base import Completion, Receipt, TaskRequest
from csautomation.connectors.local import LocalCrm
from csautomation.connectors.registry import Connectors
from csautomation.escalation.people import People, Person
from csautomation.ingest.completions import (
    completer,
    cursor,
    sync_completions,
    workflow_and_step,
)
from csautomation.store.repo import Store
from csautomation.workflows.playbook import PlaybookWorkflow
from factories import playbook_store
from playbook_support import make_worker, playbook_input

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
PEOPLE = People(
    people=[Person(id="mgr-01", name="Elena Petrova", role="manager", crm_ids={"crm": "U-MGR"})]
)


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


@pytest.mark.asyncio
async def test_a_task_completed_at_the_vendor_moves_its_playbook_on(
    env: WorkflowEnvironment, client: Client, db_url: str
) -> None:
    store = playbook_store(db_url)
    crm = VendorCrm(store)
    connectors = Connectors({"local": crm.local, "crm": crm}, default="crm", fallback=None)
    queue = f"sync-{uuid.uuid4()}"
    worker = make_worker(client, store, queue)  # its activities create the task locally
    async with worker:
        handle = await client.start_workflow(
            PlaybookWorkflow.run,
            playbook_input("usage-recovery"),
            id=f"playbook:sync:{uuid.uuid4()}",
            task_queue=queue,
        )
        while await handle.query(PlaybookWorkflow.current_step) != "wait-for-call":
            await env.sleep(timedelta(minutes=1))
        assert await sync_completions(client, store, connectors, NOW) == 0
        assert cursor(store, "crm", NOW - timedelta(days=9)) == NOW
        # closed at the vendor by the CSM's manager, whose user id there people.yaml knows
        crm.done.append(Completion("T-1", f"{handle.id}:outreach", NOW, completed_by="U-MGR"))
        later = NOW + timedelta(minutes=10)
        assert await sync_completions(client, store, connectors, later, people=PEOPLE) == 1
        assert crm.asked[-1] == NOW - timedelta(minutes=5)  # from the cursor, with overlap
        while await handle.query(PlaybookWorkflow.current_step) == "wait-for-call":
            await env.sleep(timedelta(minutes=1))
        history = await handle.query(PlaybookWorkflow.step_history)
        told = timeline(await handle.fetch_history())
    wait = next(s for s in history if s.step_id == "wait-for-call")
    assert wait.result == "continue"  # moved on by the completion, not by its timeout
    assert wait.ended_at is not None and wait.ended_at - wait.started_at < timedelta(days=1)
    done = next(line for line in told.lines if line.what.startswith("the task of step outreach"))
    assert (done.what, done.by) == ("the task of step outreach was completed by mgr-01", "mgr-01")


def test_a_vendor_user_is_named_as_people_yaml_maps_them() -> None:
    assert completer(PEOPLE, "crm", "U-MGR") == "mgr-01"
    assert completer(PEOPLE, "salesforce", "U-MGR") == "salesforce:U-MGR"  # not mapped there
    assert completer(PEOPLE, "crm", "U-ELSE") == "crm:U-ELSE"
    assert completer(None, "crm", "U-MGR") == "crm:U-MGR"
    assert completer(PEOPLE, "crm", "") == ""  # the vendor did not say: the assignee's


def test_keys_name_their_workflow_and_step() -> None:
    assert workflow_and_step("playbook:r1:ACME:12:call") == ("playbook:r1:ACME:12", "call")
    notice = "escalation:ACME:playbook:r1:ACME:12:escalate:L2.0:salesforce:mgr-01"
    assert workflow_and_step(notice) == (
        "escalation:ACME:playbook:r1:ACME:12:escalate",
        "L2.0:salesforce:mgr-01",
    )
    assert workflow_and_step("no-colon") == ("", "")
