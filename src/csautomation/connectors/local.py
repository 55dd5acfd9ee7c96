"""The built-in `local` connector: tasks, notifications and field updates kept in our own
store, so everything runs without credentials. Completing a local task signals its playbook.
"""

from __future__ import annotations

from csautomation.connectors.base import FieldUpdate, NotifyRequest, Receipt, TaskRequest
from csautomation.store.repo import Store, create_local_task
from csautomation.store.tables import LocalTaskRow


class LocalCrm:
    name = "local"

    def __init__(self, store: Store) -> None:
        self.store = store

    def create_task(self, request: TaskRequest) -> Receipt:
        task_id, created = create_local_task(
            self.store,
            LocalTaskRow(
                idempotency_key=request.idempotency_key,
                workflow_id=request.workflow_id,
                step_id=request.step_id,
                account_id=request.account.id,
                assignee=request.assignee,
                subject=request.subject,
                description=request.description,
                priority=request.priority,
                due_at=request.due_at,
            ),
        )
        return Receipt(self.name, str(task_id), created)

    def notify(self, request: NotifyRequest) -> Receipt:
        task_id, created = create_local_task(
            self.store,
            LocalTaskRow(
                idempotency_key=request.idempotency_key,
                kind="notification",
                workflow_id=request.workflow_id,
                step_id=request.step_id,
                account_id=request.account.id,
                assignee=request.channel,
                subject=request.text,
                status="sent",
            ),
        )
        return Receipt(self.name, str(task_id), created)

    def update_account(self, request: FieldUpdate) -> Receipt:
        task_id, created = create_local_task(
            self.store,
            LocalTaskRow(
                idempotency_key=request.idempotency_key,
                kind="account_update",
                workflow_id=request.workflow_id,
                step_id=request.step_id,
                account_id=request.account.id,
                subject=f"{request.field} = {request.value}",
                status="done",
            ),
        )
        return Receipt(self.name, str(task_id), created)
