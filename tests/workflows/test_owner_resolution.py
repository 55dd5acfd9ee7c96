"""A playbook's tasks for a CSM no vendor knows, through the real connectors over HTTPS and
the Temporal test server: each is a dead letter at once naming the person and the vendor
(never a task for the integration user), re-driven once the vendors know her; with a
fallback_owner each goes there instead, saying whom it was meant for."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client
from temporalio.worker import Worker

from csautomation.activities.playbook import PlaybookActivities
from csautomation.activities.redrive import redrive
from csautomation.connectors.registry import Connectors
from csautomation.escalation.people import People
from csautomation.facts.health import load_health_model
from csautomation.playbooks.spec import Playbook
from csautomation.store.deadletters import dead_letters
from csautomation.store.repo import Store
from csautomation.workflows.escalation import EscalationWorkflow
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import PlaybookInput
from factories import TODAY, account, playbook_store, vendor_connectors
from fakes.vendors import SF_KEY, SHIPPED_PEOPLE, Vendors, shipped_user_id
from playbook_support import GRACEFUL_SHUTDOWN

LABEL = {"salesforce": "Salesforce", "zendesk": "Zendesk", "hubspot": "HubSpot"}
BOOK = Playbook.model_validate(
    {
        "id": "three-vendors",
        "name": "A task in each vendor",
        "owner": "cs-ops",
        "steps": [
            *(
                {"id": name, "create_task": {"connector": name, "subject": "Call"}}
                for name in LABEL
            ),
            {"id": "done", "complete": {"outcome": "done"}},
        ],
    }
)


def people() -> People:
    """The shipped people.yaml and Dana Ruiz, a new CSM no vendor knows yet."""
    doc = yaml.safe_load(SHIPPED_PEOPLE.read_text(encoding="utf-8"))
    doc["people"].append(
        {"id": "csm-20", "name": "Dana Ruiz", "role": "csm", "team": "growth",
         "manager": "mgr-02", "email": "dana.ruiz@example.com"}
    )  # fmt: skip
    return People.model_validate(doc)


def danas_store(db_url: str) -> Store:
    store = playbook_store(db_url)
    store.upsert_accounts(
        [account(id="ACME", name="Acme Corp", arr=2e5, seats=40,
                 renewal_date=date(2027, 2, 1), owner="csm-20")]
    )  # fmt: skip
    return store


def activities(store: Store, connectors: Connectors) -> PlaybookActivities:
    return PlaybookActivities(
        store,
        load_health_model(),
        clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC),
        connectors=connectors,
    )


async def run_once(client: Client, acts: PlaybookActivities) -> tuple[str, str]:
    """(workflow id, outcome) of one playbook run for ACME."""
    queue = f"owners-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[PlaybookWorkflow, EscalationWorkflow],
        activities=acts.all(),
        activity_executor=ThreadPoolExecutor(4),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    ):
        handle = await client.start_workflow(
            PlaybookWorkflow.run,
            PlaybookInput(playbook=BOOK, playbook_version="v1", account_id="ACME"),
            id=f"playbook:three-vendors:ACME:{uuid.uuid4()}",
            task_queue=queue,
        )
        result = await handle.result()
    return handle.id, result.outcome


def vendor_tasks(vendors: Vendors, workflow_id: str) -> dict[str, tuple[str, str]]:
    """Vendor -> (the user its task went to, the task's description), for this run."""
    found: dict[str, tuple[str, str]] = {}
    for t in vendors.salesforce.tasks.values():
        if t[SF_KEY].startswith(workflow_id):
            found["salesforce"] = (t["OwnerId"], t["Description"])
    for z in vendors.zendesk.tickets.values():
        if (z["external_id"] or "").startswith(workflow_id):
            found["zendesk"] = (str(z["assignee_id"]), z["description"])
    for h in vendors.hubspot.tasks:
        props: dict[str, Any] = h["properties"]
        if props.get("csauto_key", "").startswith(workflow_id):
            found["hubspot"] = (props["hubspot_owner_id"], props["hs_task_body"])
    return found


@pytest.mark.asyncio
async def test_tasks_for_a_csm_no_vendor_knows_are_dead_letters_naming_her_then_redriven(
    client: Client, vendors: Vendors, tmp_path: Path, db_url: str
) -> None:
    store = danas_store(db_url)
    connectors = vendor_connectors(vendors, store, tmp_path, people=people())
    try:
        workflow_id, outcome = await run_once(client, activities(store, connectors))
    finally:
        connectors.close()
    assert outcome == "incomplete"  # its actions wait in the dead-letter store
    assert vendor_tasks(vendors, workflow_id) == {}  # nobody's task, not the integration user's
    letters = {d.connector: d for d in dead_letters(store)}
    assert sorted(letters) == sorted(LABEL)
    for name, vendor in LABEL.items():
        letter = letters[name]
        assert letter.attempts == 1 and letter.errors[-1]["type"] == "UnresolvedOwnerError"
        assert letter.errors[-1]["message"] == (
            f"{name} create_task: csm-20 (Dana Ruiz) has no {vendor} user: no {vendor} user "
            f"has the e-mail dana.ruiz@example.com; add crm_ids.{name} or an email {vendor} "
            "knows to people.yaml, or set fallback_owner in the connector's file"
        )

    # the vendors' admins add her; the re-drive (a new process: a fresh cache) finds her
    dana = {
        "salesforce": vendors.salesforce.add_user("dana.ruiz@example.com", "Dana Ruiz"),
        "zendesk": str(vendors.zendesk.add_user("dana.ruiz@example.com", "Dana Ruiz")),
        "hubspot": vendors.hubspot.add_owner("dana.ruiz@example.com", "Dana Ruiz"),
    }
    again = vendor_connectors(vendors, store, tmp_path, people=people())
    try:
        for d in dead_letters(store, None):
            redrive(activities(store, again), d.action, d.payload)
    finally:
        again.close()
    made = vendor_tasks(vendors, workflow_id)
    assert {name: user for name, (user, _) in made.items()} == dana


@pytest.mark.asyncio
async def test_with_a_fallback_owner_the_tasks_go_there_saying_whom_they_were_meant_for(
    client: Client, vendors: Vendors, tmp_path: Path, db_url: str
) -> None:
    store = danas_store(db_url)
    connectors = vendor_connectors(
        vendors, store, tmp_path, people=people(), fallback_owner="ops-01"
    )
    try:
        workflow_id, outcome = await run_once(client, activities(store, connectors))
    finally:
        connectors.close()
    assert outcome == "done" and dead_letters(store) == []
    made = vendor_tasks(vendors, workflow_id)
    assert sorted(made) == sorted(LABEL)
    for name, vendor in LABEL.items():
        user, description = made[name]
        assert user == shipped_user_id("ops-01", name)
        assert description.startswith(
            f"Meant for Dana Ruiz (csm-20), who has no {vendor} user: no {vendor} user has "
            "the e-mail dana.ruiz@example.com. Assigned to CS Ops on call, the fallback "
            "owner of this connector."
        ), description
