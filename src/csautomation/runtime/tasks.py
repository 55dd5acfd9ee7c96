"""Completion sync for the local connector: a CSM completes a task, its playbook moves on."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.service import RPCError

from csautomation.store.outbox import complete_local_task
from csautomation.store.repo import Store
from csautomation.store.tables import LocalTaskRow
from csautomation.workflows.playbook import PlaybookWorkflow


async def complete_task(client: Client, store: Store, task_id: int) -> LocalTaskRow | None:
    """Mark the task done, then signal its workflow; None when there is no such task.

    Marking first is safe: completing again re-sends the signal, which the workflow treats
    as the same fact. A workflow that has already closed simply ignores it.
    """
    row = await asyncio.to_thread(complete_local_task, store, task_id)
    if row is None:
        return None
    handle = client.get_workflow_handle(row.workflow_id)
    try:
        await handle.signal(PlaybookWorkflow.task_completed, row.step_id)
    except RPCError as exc:  # closed, or unknown to this cluster: the task is still done
        if "not found" not in str(exc).lower() and "completed" not in str(exc).lower():
            raise
    return row
