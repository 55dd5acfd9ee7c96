"""The escalation workflow's activities: plan from the matrix, record for the manager's
page, and tell one person through one channel, exactly once.

A channel is a connector id. A CRM (it can create tasks) gets a task assigned to the
person, due at the acknowledge deadline; a notifier (Slack, a webhook) gets a message. A
channel that is not configured falls back to the built-in connector's notification, as a
playbook's notify step does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from temporalio import activity
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from csautomation.activities.playbook import PlaybookActivities
from csautomation.connectors.base import NotifyRequest, TaskConnector, TaskRequest
from csautomation.errors import CsAutomationError
from csautomation.escalation.matrix import EscalationMatrix
from csautomation.escalation.model import EscalationPlan
from csautomation.escalation.people import People
from csautomation.escalation.policy import plan
from csautomation.store.escalations import record_escalation
from csautomation.workflows import activity_names as names
from csautomation.workflows.types import (
    ActionResult,
    EscalationNotice,
    EscalationPlanInput,
    EscalationRecord,
    OpenEscalation,
)

PRIORITY = {"critical": "critical", "high": "high", "medium": "medium", "low": "low"}


class EscalationActivities:
    def __init__(
        self,
        actions: PlaybookActivities,
        matrix: EscalationMatrix,
        people: People,
        page_url: str = "",
    ) -> None:
        self.actions = actions  # the store, the connectors and exactly-once delivery
        self.store = actions.store
        self.matrix = matrix
        self.people = people
        self.page_url = page_url.rstrip("/")

    @activity.defn(name=names.PLAN_ESCALATION)
    def plan_escalation(self, inp: EscalationPlanInput) -> EscalationPlan:
        account = self.actions.account(inp.account_id)
        try:
            return plan(self.matrix, self.people, account, inp.severity, inp.start, inp.from_level)
        except CsAutomationError as exc:  # an unknown severity: no retry will fix it
            raise ApplicationError(str(exc), non_retryable=True, type=type(exc).__name__) from exc

    @activity.defn(name=names.OPEN_ESCALATION)
    async def open_escalation(self, inp: OpenEscalation) -> str:
        """Start the escalation workflow on this worker's queue, once per id: an open one
        is kept (a retried step), a closed one is not opened again."""
        from csautomation.workflows.escalation import EscalationWorkflow

        # the reason as people read it: "Renewal at risk at Acme Corp", not its template
        reason = await asyncio.to_thread(
            self.actions.render_for, inp.input.account_id, inp.input.reason, inp.context
        )
        try:
            handle = await activity.client().start_workflow(
                EscalationWorkflow.run,
                inp.input.model_copy(update={"reason": reason}),
                id=inp.workflow_id,
                task_queue=activity.info().task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            return "closed"
        return handle.result_run_id or ""

    @activity.defn(name=names.RECORD_ESCALATION)
    def record_escalation(self, inp: EscalationRecord) -> None:
        record_escalation(self.store, inp.state, inp.seq, inp.plan)

    @activity.defn(name=names.NOTIFY_ESCALATION)
    def notify_escalation(self, inp: EscalationNotice) -> ActionResult:
        account = self.actions.account(inp.account_id)
        person = self.people.get(inp.person_id)
        configured = self.actions.connectors.by_name.get(inp.channel)
        kind = getattr(getattr(configured, "config", None), "type", "")
        name = person.name if person else inp.person_id
        if kind == "slack" and person is not None and person.slack:
            name = f"<@{person.slack}>"  # a mention: Slack tells them, not just the channel
        link = f"{self.page_url}/escalations/{quote(inp.workflow_id, safe='')}"
        due = f"; acknowledge by {inp.ack_by:%Y-%m-%d %H:%M} UTC" if inp.ack_by else ""
        text = (
            f"[{inp.severity.upper()}] escalation for {account.name} (level {inp.level}), "
            f"for {name}: {inp.reason or 'see the review page'}{due}"
            + (f" {link}" if self.page_url else "")
        )
        key = inp.idempotency_key
        if isinstance(configured, TaskConnector):
            task = TaskRequest(
                idempotency_key=key,
                workflow_id=inp.workflow_id,
                step_id=inp.step_id,
                account=account,
                assignee=inp.person_id,
                subject=f"Escalation ({inp.severity}): {account.name}",
                description=text,
                due_at=inp.ack_by or self.actions.clock(),
                priority=PRIORITY.get(inp.severity, "high"),
            )
            return self.actions.deliver(
                names.NOTIFY_ESCALATION, inp, configured, task, lambda: configured.create_task(task)
            )
        message = NotifyRequest(
            idempotency_key=key,
            workflow_id=inp.workflow_id,
            step_id=inp.step_id,
            account=account,
            channel=inp.channel,
            text=text,
        )
        notifier = self.actions.connector(self.actions.connectors.notifier, inp.channel)
        return self.actions.deliver(
            names.NOTIFY_ESCALATION, inp, notifier, message, lambda: notifier.notify(message)
        )

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.plan_escalation,
            self.record_escalation,
            self.notify_escalation,
            self.open_escalation,
        ]
