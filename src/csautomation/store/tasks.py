"""The local CRM's tasks as a CSM works them: each with its account's name and the run that
created it (its playbook and step), for the "My work" page and `csauto tasks`.

A task's run is found by its workflow id in the runs index; an escalation a playbook step
opened is not in that index, so its tasks name the escalation instead.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select

from csautomation.store.engine import aware, table
from csautomation.store.repo import Store
from csautomation.store.tables import LocalTaskRow, PlaybookRunRow


@dataclass(frozen=True)
class WorkItem:
    """One task of the local CRM with where it came from."""

    id: int
    subject: str
    description: str
    due_at: datetime | None
    status: str
    priority: str
    assignee: str
    account_id: str
    account_name: str
    workflow_id: str
    step_id: str
    playbook: str  # the playbook's id, "escalation", or "" when the run is unknown
    rule_id: str
    created_at: datetime

    def overdue(self, now: datetime) -> bool:
        return self.status != "done" and self.due_at is not None and self.due_at < now


def work_items(
    store: Store,
    assignees: Collection[str] | None = None,
    status: str | None = "open",
    limit: int = 500,
) -> list[WorkItem]:
    """Tasks (not notifications) of these assignees (None: everyone's) in this status
    (None: any), soonest due first, those without a due date last."""
    t = table(LocalTaskRow)
    q = select(t).where(t.c.kind == "task")
    if assignees is not None:
        if not assignees:
            return []
        q = q.where(t.c.assignee.in_(sorted(assignees)))
    if status is not None:
        q = q.where(t.c.status == status)
    q = q.order_by(t.c.due_at.is_(None), t.c.due_at, t.c.id).limit(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return _items(store, rows)


def work_item(store: Store, task_id: int) -> WorkItem | None:
    """One task (not a notification), or None."""
    t = table(LocalTaskRow)
    with store.engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.id == task_id, t.c.kind == "task")).all()
    found = _items(store, rows)
    return found[0] if found else None


def _items(store: Store, rows: Sequence[Row[Any]]) -> list[WorkItem]:
    runs = _runs(store, {str(r.workflow_id) for r in rows})
    accounts = store.accounts({str(r.account_id) for r in rows})
    out = []
    for r in rows:
        playbook, rule = runs.get(r.workflow_id, ("", ""))
        if not playbook and r.workflow_id.startswith("escalation:"):
            playbook = "escalation"
        account = accounts.get(r.account_id)
        out.append(
            WorkItem(
                id=int(r.id),
                subject=r.subject,
                description=r.description,
                due_at=aware(r.due_at) if r.due_at is not None else None,
                status=r.status,
                priority=r.priority,
                assignee=r.assignee,
                account_id=r.account_id,
                account_name=account.name if account is not None else r.account_id,
                workflow_id=r.workflow_id,
                step_id=r.step_id,
                playbook=playbook,
                rule_id=rule,
                created_at=aware(r.created_at),
            )
        )
    return out


def _runs(store: Store, workflow_ids: Collection[str]) -> dict[str, tuple[str, str]]:
    t = table(PlaybookRunRow)
    ids = sorted(workflow_ids)
    out: dict[str, tuple[str, str]] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            q = select(t.c.workflow_id, t.c.kind, t.c.playbook_id, t.c.rule_id).where(
                t.c.workflow_id.in_(ids[start : start + 500])
            )
            for wid, kind, playbook, rule in conn.execute(q):
                out[wid] = (playbook or ("escalation" if kind == "escalation" else ""), rule)
    return out
