"""The built-in `local` connector: tasks, notifications and field updates kept in our own
store, so everything runs without credentials. Completing a local task signals its playbook.

Each row and its decision-ledger entry are written in one transaction (`record`): a worker
killed in between leaves neither, and its retry writes both, "created" once.
"""

from __future__ import annotations

from typing import Any

from csautomation.connectors.base import FieldUpdate, NotifyRequest, Receipt, TaskRequest
from csautomation.store import ledger
from csautomation.store.repo import Store, insert_local_task
from csautomation.store.tables import LocalTaskRow

LocalRequest = TaskRequest | NotifyRequest | FieldUpdate


class LocalCrm:
    name = "local"

    def __init__(self, store: Store) -> None:
        self.store = store

    def create_task(self, request: TaskRequest) -> Receipt:
        return self.record(request, "create_task")

    def notify(self, request: NotifyRequest) -> Receipt:
        return self.record(request, "notify")

    def update_account(self, request: FieldUpdate) -> Receipt:
        return self.record(request, "update_account")

    def record(self, request: LocalRequest, action: str) -> Receipt:
        """The request's row and its ledger entry of kind `action` (create_task, notify,
        update_account, notify_escalation), in one transaction. A row found there already
        has its entry, written with it (a row kept before the ledger was written this way
        gets its entry now, at the row's own time)."""
        with self.store.engine.begin() as conn:
            task_id, created, made_at = insert_local_task(conn, _row(request))
            ledger.append(
                conn,
                [
                    ledger.effect(
                        action,
                        request.idempotency_key,
                        request.workflow_id,
                        request.step_id,
                        request.account.id,
                        self.name,
                        str(task_id),
                        created,
                        at=made_at,
                    )
                ],
            )
        return Receipt(self.name, str(task_id), created)


def _row(request: LocalRequest) -> LocalTaskRow:
    common: dict[str, Any] = {
        "idempotency_key": request.idempotency_key,
        "workflow_id": request.workflow_id,
        "step_id": request.step_id,
        "account_id": request.account.id,
    }
    if isinstance(request, TaskRequest):
        return LocalTaskRow(
            **common,
            assignee=request.assignee,
            subject=request.subject,
            description=request.description,
            priority=request.priority,
            due_at=request.due_at,
        )
    if isinstance(request, NotifyRequest):
        return LocalTaskRow(
            **common,
            kind="notification",
            assignee=request.channel,
            subject=request.text,
            status="sent",
        )
    return LocalTaskRow(
        **common,
        kind="account_update",
        subject=f"{request.field} = {request.value}",
        status="done",
    )
