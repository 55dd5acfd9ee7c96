"""Activities of the playbook workflow, built with their dependencies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from csautomation.facts.derive import derive
from csautomation.facts.health import HealthModel
from csautomation.playbooks.templates import TemplateProblem, render
from csautomation.store.repo import Store, create_local_task
from csautomation.store.tables import LocalTaskRow
from csautomation.workflows.types import FactsInput, TaskInput, TaskResult


class PlaybookActivities:
    def __init__(
        self,
        store: Store,
        model: HealthModel,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.model = model
        self.clock = clock

    def _facts(self, account_id: str) -> dict[str, Any]:
        account = self.store.account(account_id)
        if account is None:
            raise ApplicationError(
                f"no account '{account_id}'", non_retryable=True, type="UnknownAccount"
            )
        return derive(
            account, self.store.signals_for(account_id), self.clock().date(), self.model
        ).record()

    @activity.defn(name="read_account_facts")
    def read_account_facts(self, inp: FactsInput) -> dict[str, Any]:
        return self._facts(inp.account_id)

    @activity.defn(name="create_task")
    def create_task(self, inp: TaskInput) -> TaskResult:
        account = self.store.account(inp.account_id)
        if account is None:
            raise ApplicationError(
                f"no account '{inp.account_id}'", non_retryable=True, type="UnknownAccount"
            )
        context = {
            "account": account.model_dump(mode="json"),
            "facts": self._facts(inp.account_id),
            **inp.context,
        }
        try:
            subject = render(inp.subject, context)
            description = render(inp.description, context)
        except TemplateProblem as exc:
            raise ApplicationError(str(exc), non_retryable=True, type="TemplateError") from None
        assignee = account.owner if inp.assignee == "owner" else account.manager
        task_id, created = create_local_task(
            self.store,
            LocalTaskRow(
                idempotency_key=inp.idempotency_key,
                workflow_id=inp.workflow_id,
                step_id=inp.step_id,
                account_id=inp.account_id,
                assignee=assignee,
                subject=subject,
                description=description,
                priority=inp.priority,
                due_at=inp.due_at,
            ),
        )
        return TaskResult(task_id=str(task_id), created=created)

    @activity.defn(name="notify")
    def notify(self, payload: dict[str, Any]) -> str:
        return self._record("notification", payload)

    @activity.defn(name="update_account")
    def update_account(self, payload: dict[str, Any]) -> str:
        return self._record("account_update", payload)

    def _record(self, kind: str, payload: dict[str, Any]) -> str:
        key = str(payload["idempotency_key"])
        account = self.store.account(str(payload["account_id"]))
        text = payload.get("template", "")
        if account is not None and text:
            text = render(
                text, {"account": account.model_dump(mode="json"), "facts": self._facts(account.id)}
            )
        task_id, _ = create_local_task(
            self.store,
            LocalTaskRow(
                idempotency_key=key,
                kind=kind,
                workflow_id=key.rsplit(":", 1)[0],
                step_id=key.rsplit(":", 1)[-1],
                account_id=str(payload["account_id"]),
                subject=text or f"{payload.get('field')} = {payload.get('value')}",
            ),
        )
        return str(task_id)

    def all(self) -> list[Callable[..., Any]]:
        return [self.read_account_facts, self.create_task, self.notify, self.update_account]
