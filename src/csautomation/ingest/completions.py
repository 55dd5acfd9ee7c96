"""Completion sync: tasks and tickets that CSMs complete in their CRM move their playbooks
on. Each connector that can report completions (`CompletionSource`) is polled from its
cursor; every completion is signalled to the playbook that created the record, found by
the idempotency key the record carries (workflow id + ":" + step id). Signals are
idempotent in effect (a step completed twice is completed), so an overlap is harmless:
the cursor moves back by `overlap` to catch records the vendor reports late.

The built-in local CRM needs no polling: `complete_task` marks its task done and signals
the playbook at once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from temporalio.client import Client
from temporalio.service import RPCError

from csautomation.connectors.base import CompletionSource
from csautomation.connectors.registry import Connectors
from csautomation.errors import ConnectorError
from csautomation.escalation.people import People
from csautomation.store.engine import aware, table, upsert
from csautomation.store.outbox import complete_local_task
from csautomation.store.repo import Store
from csautomation.store.tables import LocalTaskRow, SyncCursorRow
from csautomation.workflows.playbook import PlaybookWorkflow

log = logging.getLogger(__name__)


def cursor(store: Store, connector: str, default: datetime) -> datetime:
    t = table(SyncCursorRow)
    with store.engine.connect() as conn:
        value = conn.execute(select(t.c.synced_until).where(t.c.connector == connector)).scalar()
    return aware(value) if isinstance(value, datetime) else default


def move_cursor(store: Store, connector: str, until: datetime) -> None:
    t = table(SyncCursorRow)
    with store.engine.begin() as conn:
        conn.execute(
            upsert(conn, t)
            .values(connector=connector, synced_until=until)
            .on_conflict_do_update(index_elements=[t.c.connector], set_={"synced_until": until})
        )


def workflow_and_step(key: str) -> tuple[str, str]:
    """The workflow and step an idempotency key names: a playbook step's is
    `{workflow}:{step}`, an escalation notice's `{workflow}:{round}:{channel}:{person}`
    (workflow ids hold colons; the parts after them never do)."""
    pieces = key.rsplit(":", 3 if key.startswith("escalation:") else 1)
    if len(pieces) < 2:
        return "", ""
    return pieces[0], ":".join(pieces[1:])


async def sync_completions(
    client: Client,
    store: Store,
    connectors: Connectors,
    now: datetime | None = None,
    overlap: timedelta = timedelta(minutes=5),
    first_look_back: timedelta = timedelta(days=1),
    people: People | None = None,
) -> int:
    """Signal every completion reported since each connector's cursor; returns how many
    playbooks were told. A connector that fails keeps its cursor (and is tried again).
    Whoever completed a task, when the vendor tells, is named by their person id where
    people.yaml maps the vendor's user id to one (`crm_ids`), else as `connector:user`."""
    at = now or datetime.now(UTC)
    told = 0
    for name, connector in connectors.by_name.items():
        if not isinstance(connector, CompletionSource) or name == "local":
            continue
        since = cursor(store, name, at - first_look_back) - overlap
        try:
            done = connector.completed_since(since)
        except ConnectorError as exc:
            log.warning("completion sync from %s failed: %s", name, exc)
            continue
        for c in done:
            workflow_id, step_id = workflow_and_step(c.idempotency_key)
            if not workflow_id:
                continue
            try:
                by = completer(people, name, c.completed_by)
                await client.get_workflow_handle(workflow_id).signal(
                    "task_completed", args=_completion(step_id, by)
                )
                told += 1
            except RPCError:  # the playbook closed meanwhile: nothing waits for it
                continue
        move_cursor(store, name, at)
    return told


def completer(people: People | None, connector: str, user: str) -> str:
    """The person id of a vendor's user, as people.yaml maps it; else `connector:user`
    ("" when the vendor did not say who)."""
    if not user:
        return ""
    for person in people.people if people is not None else []:
        if person.crm_ids.get(connector) == user:
            return person.id
    return f"{connector}:{user}"


async def complete_task(
    client: Client, store: Store, task_id: int, by: str = ""
) -> LocalTaskRow | None:
    """Mark the task done, then signal its workflow; None when there is no such task.
    `by` is the person id of whoever completed it: an escalation credits them with the
    acknowledgement (without it, the task's assignee).

    Marking first is safe: completing again re-sends the signal, which the workflow treats
    as the same fact. A workflow that has already closed simply ignores it.
    """
    row = await asyncio.to_thread(complete_local_task, store, task_id, by)
    if row is None:
        return None
    handle = client.get_workflow_handle(row.workflow_id)
    try:
        await handle.signal(PlaybookWorkflow.task_completed, args=_completion(row.step_id, by))
    except RPCError as exc:  # closed, or unknown to this cluster: the task is still done
        if "not found" not in str(exc).lower() and "completed" not in str(exc).lower():
            raise
    return row


def _completion(step_id: str, by: str) -> list[str]:
    """The task_completed signal's arguments: the step, and who completed it when known
    (left out otherwise, as workers before the actor was recorded expect)."""
    return [step_id, by] if by else [step_id]
