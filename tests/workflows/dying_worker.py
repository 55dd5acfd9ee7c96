"""A worker process that dies at one moment of a side effect, as a kill -9 would take it:

    python -m workflows.dying_worker DATABASE_URL ADDRESS NAMESPACE QUEUE MOMENT CONNECTORS CA

MOMENT:
    before-entry    the local CRM's row written, its ledger entry not yet (inside the
                    transaction that writes both)
    after-commit    the row and its entry committed, the activity's completion never sent
    after-vendor    the vendor made the record; the receipt and the entry not yet written

It runs the playbook workflow and its real activities on QUEUE (vendor connectors from the
CONNECTORS folder, the fakes' CA file CA, credentials from the environment) and leaves with
`os._exit(KILLED)` at MOMENT: no cleanup, no rollback, no completion reported. It prints
"polling" once its worker polls.
"""

from __future__ import annotations

import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

import csautomation.activities.playbook as playbook_activities
from csautomation.activities.playbook import PlaybookActivities
from csautomation.connectors.loader import build_connectors, load_connectors
from csautomation.connectors.local import LocalCrm
from csautomation.facts.health import load_health_model
from csautomation.runtime.converter import data_converter
from csautomation.store import ledger
from csautomation.store.repo import Store
from csautomation.workflows.playbook import PlaybookWorkflow
from factories import TODAY

KILLED = 86
MOMENTS = ("before-entry", "after-commit", "after-vendor")


def die(moment: str) -> None:
    print(f"killed {moment}", flush=True)
    os._exit(KILLED)


def arm(moment: str) -> None:
    if moment == "before-entry":
        append = ledger.append

        def dying_append(conn: Any, entries: Any) -> list[ledger.Entry]:
            entries = list(entries)
            if any(e.kind in ledger.EFFECTS for e in entries):
                die(moment)  # the row is written in this transaction, uncommitted
            return append(conn, entries)

        ledger.append = dying_append  # type: ignore[assignment]
    elif moment == "after-commit":
        record = LocalCrm.record

        def dying_record(self: LocalCrm, request: Any, action: str) -> Any:
            record(self, request, action)
            die(moment)

        LocalCrm.record = dying_record  # type: ignore[method-assign]
    elif moment == "after-vendor":

        def dying_keep(*_args: Any, **_kwargs: Any) -> None:
            die(moment)

        playbook_activities.keep_receipt = dying_keep
    else:
        raise SystemExit(f"MOMENT: one of {', '.join(MOMENTS)}")


def noon() -> datetime:
    """The facts' "today", as the tests' other workers have it."""
    return datetime.combine(TODAY, time(12), tzinfo=UTC)


async def main(argv: list[str]) -> None:
    url, address, namespace, queue, moment, folder, ca = argv
    store = Store(url)
    connectors = build_connectors(load_connectors([Path(folder)]), store, verify=ca)
    arm(moment)
    acts = PlaybookActivities(store, load_health_model(), clock=noon, connectors=connectors)
    client = await Client.connect(address, namespace=namespace, data_converter=data_converter)
    async with Worker(
        client,
        task_queue=queue,
        workflows=[PlaybookWorkflow],
        activities=acts.all(),
        activity_executor=ThreadPoolExecutor(2),
        # no sticky queue: the test server never moves a task from a dead worker's sticky
        # queue to the shared one, and the workflow's next task would wait there for good
        max_cached_workflows=0,
    ):
        print("polling", flush=True)
        await asyncio.Event().wait()  # until the moment comes


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
