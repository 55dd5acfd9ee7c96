"""Workers killed in the middle of a side effect (tests/workflows/dying_worker.py: real
processes ended by `os._exit`): one between the local CRM's row and its ledger entry, one
after both committed but before Temporal heard, one after a vendor made the record but
before its receipt and entry were kept. Another worker retries each activity; the ledger
then holds exactly one entry for each effect, and it says "created"; the CRM and the
vendor hold one record each, and the chain verifies.

The three run at once: each killed attempt is retried only when its 30 s start-to-close
timeout expires, in real time (the test server's clock stands still while an attempt is
outstanding), so the test waits that out once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from csautomation.activities.playbook import PlaybookActivities
from csautomation.connectors.receipts import receipt_for
from csautomation.connectors.registry import Connectors
from csautomation.facts.health import load_health_model
from csautomation.playbooks.spec import Playbook
from csautomation.store import ledger
from csautomation.store.chain import verify
from csautomation.store.repo import Store, local_tasks
from csautomation.workflows.playbook import PlaybookWorkflow
from csautomation.workflows.types import PlaybookInput
from factories import TODAY, playbook_store, vendor_connectors
from fakes.vendors import SF_KEY, Vendors
from playbook_support import GRACEFUL_SHUTDOWN
from workflows.dying_worker import KILLED

TESTS = Path(__file__).parents[1]
# where each worker dies, and the connector of the task it is creating then
MOMENTS = {"before-entry": "local", "after-commit": "local", "after-vendor": "salesforce"}


def playbook(connector: str) -> Playbook:
    return Playbook.model_validate(
        {
            "id": "one-task",
            "name": "One task",
            "owner": "cs-ops",
            "steps": [
                {"id": "call", "create_task": {"connector": connector, "subject": "Call"}},
                {"id": "done", "complete": {"outcome": "done"}},
            ],
        }
    )


@dataclass
class Kill:
    moment: str
    queue: str
    proc: subprocess.Popen[str]
    handle: WorkflowHandle[Any, Any] | None = None

    @property
    def workflow_id(self) -> str:
        assert self.handle is not None
        return self.handle.id


@pytest.fixture
def kills() -> Iterator[list[Kill]]:
    started: list[Kill] = []
    yield started
    for k in started:
        if k.proc.poll() is None:
            k.proc.kill()
        k.proc.communicate()


def dying_worker(client: Client, url: str, moment: str, folder: Path, vendors: Vendors) -> Kill:
    queue = f"kill-{moment}-{uuid.uuid4()}"
    env = {
        **os.environ,
        **vendors.credentials(),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    args = [url, client.service_client.config.target_host, client.namespace, queue, moment]
    args += [str(folder / "connectors"), vendors.ca_file(folder)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "workflows.dying_worker", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Kill(moment, queue, proc)


def effects(store: Store, workflow_id: str) -> list[ledger.Entry]:
    return ledger.entries(store, ledger.Query(workflow_id=workflow_id, kinds=ledger.EFFECTS))


def vendor_tasks(vendors: Vendors, workflow_id: str) -> list[str]:
    key = f"{workflow_id}:call"
    return [i for i, t in vendors.salesforce.tasks.items() if t.get(SF_KEY) == key]


def check_at_the_kill(store: Store, vendors: Vendors, kill: Kill) -> None:
    """What the store (and the vendor) hold when the process is gone."""
    wid = kill.workflow_id
    rows, entries = local_tasks(store, wid), effects(store, wid)
    if kill.moment == "before-entry":  # the transaction died with the process: neither
        assert rows == [] and entries == []
    elif kill.moment == "after-commit":  # both committed; Temporal never heard
        assert len(rows) == 1 and [e.detail["outcome"] for e in entries] == ["created"]
    else:  # the vendor has it; our store knows nothing of it
        assert len(vendor_tasks(vendors, wid)) == 1
        assert receipt_for(store, f"{wid}:call") is None and entries == []


def activities(store: Store, connectors: Connectors) -> PlaybookActivities:
    return PlaybookActivities(
        store,
        load_health_model(),
        clock=lambda: datetime.combine(TODAY, time(12), tzinfo=UTC),
        connectors=connectors,
    )


def worker(client: Client, queue: str, acts: PlaybookActivities) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[PlaybookWorkflow],
        activities=acts.all(),
        activity_executor=ThreadPoolExecutor(2),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


@pytest.mark.asyncio
async def test_a_worker_killed_in_the_middle_of_a_side_effect_leaves_one_created_entry(
    client: Client, db_url: str, tmp_path: Path, vendors: Vendors, kills: list[Kill]
) -> None:
    store = playbook_store(db_url)
    connectors = vendor_connectors(vendors, store, tmp_path)  # writes tmp_path/connectors
    try:
        for moment, connector in MOMENTS.items():
            kills.append(kill := dying_worker(client, db_url, moment, tmp_path, vendors))
            kill.handle = await client.start_workflow(
                PlaybookWorkflow.run,
                PlaybookInput(
                    playbook=playbook(connector), playbook_version="v1", account_id="ACME"
                ),
                id=f"playbook:one-task:ACME:{moment}:{uuid.uuid4()}",
                task_queue=kill.queue,
            )
        for kill in kills:
            output, _ = await asyncio.to_thread(kill.proc.communicate, timeout=120)
            assert kill.proc.returncode == KILLED and f"killed {kill.moment}" in output, output
            check_at_the_kill(store, vendors, kill)

        acts = activities(store, connectors)
        async with contextlib.AsyncExitStack() as stack:
            for kill in kills:
                await stack.enter_async_context(worker(client, kill.queue, acts))
            for kill in kills:  # one at a time: the time-skipping lock is not for many
                assert kill.handle is not None
                assert (await kill.handle.result()).outcome == "done"
    finally:
        connectors.close()

    for kill in kills:
        [entry] = effects(store, kill.workflow_id)  # one entry for the effect: "created"
        assert entry.kind == "create_task", kill.moment
        assert (entry.detail["outcome"], entry.detail["created"]) == ("created", True)
        if kill.moment == "after-vendor":
            [task_id] = vendor_tasks(vendors, kill.workflow_id)
            assert (entry.connector, entry.record_id) == ("salesforce", task_id)
            # the retry found the record at the vendor: made by this effect, recorded by
            # no one before; the vendor's answer is kept as the evidence
            assert entry.detail["vendor"] == "found_existing" and entry.detail["attempt"] == 2
            assert receipt_for(store, f"{kill.workflow_id}:call") is not None
        else:
            [row] = local_tasks(store, kill.workflow_id)
            assert (entry.connector, entry.record_id) == ("local", str(row.id))
    assert verify(store.engine).ok
    store.engine.dispose()
